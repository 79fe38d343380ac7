package sqs

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/thingpipe/thingpipe/internal/awstest"
)

func TestMain(m *testing.M) { os.Exit(awstest.Main(m)) }

// testClient is a real SDK client pointed at moto.
func testClient(t testing.TB) *sqs.Client {
	t.Helper()
	return sqs.NewFromConfig(awstest.Config(t))
}

// createQueue makes a queue with a unique name (FIFO when fifo) and returns its name and URL.
func createQueue(t testing.TB, client *sqs.Client, prefix string, fifo bool) (string, string) {
	t.Helper()
	name := awstest.Name(t, prefix)
	var attrs map[string]string
	if fifo {
		name += ".fifo"
		attrs = map[string]string{"FifoQueue": "true"}
	}
	out, err := client.CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs})
	if err != nil {
		t.Fatalf("CreateQueue %s: %v", name, err)
	}
	return name, aws.ToString(out.QueueUrl)
}

// quietLogger keeps warnings and errors on stderr, where a failing test shows them.
func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// fastConfig is a SubscriberConfig with short timings so tests take seconds.
func fastConfig(client SubscriberAPI) SubscriberConfig {
	return SubscriberConfig{
		Client:              client,
		Logger:              quietLogger(),
		VisibilityTimeout:   4 * time.Second,
		WaitTime:            time.Second,
		HeartbeatInterval:   time.Second,
		DeleteBatchInterval: 20 * time.Millisecond,
		NackBackoffInitial:  time.Second,
		NackBackoffMax:      2 * time.Second,
		CloseTimeout:        2 * time.Second,
		RetryBackoff:        20 * time.Millisecond,
	}
}

// records is a slog handler that keeps every record, for tests that check what was reported.
type records struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	r.recs = append(r.recs, rec.Clone())
	r.mu.Unlock()
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }

// find returns the records at level or above whose message is msg, with their attributes.
func (r *records) find(level slog.Level, msg string) []map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []map[string]any
	for _, rec := range r.recs {
		if rec.Level < level || rec.Message != msg {
			continue
		}
		attrs := map[string]any{}
		rec.Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value.Any(); return true })
		out = append(out, attrs)
	}
	return out
}
