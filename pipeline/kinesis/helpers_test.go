package kinesis

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/thingpipe/thingpipe/internal/awstest"
)

func TestMain(m *testing.M) { os.Exit(awstest.Main(m)) }

// env is the AWS side of one test: real SDK clients against moto, a fresh stream and lease table.
type env struct {
	cfg    aws.Config
	kin    *kinesis.Client
	ddb    *dynamodb.Client
	stream string
	table  string
}

func newEnv(t testing.TB, shards int32) *env {
	t.Helper()
	cfg := awstest.Config(t)
	e := &env{cfg: cfg, kin: kinesis.NewFromConfig(cfg), ddb: dynamodb.NewFromConfig(cfg),
		stream: awstest.Name(t, "stream"), table: awstest.Name(t, "leases")}
	ctx := context.Background()
	if err := createStream(ctx, e.kin, e.stream, shards); err != nil {
		t.Fatal(err)
	}
	if err := ensureLeaseTable(ctx, e.ddb, e.table); err != nil {
		t.Fatal(err)
	}
	return e
}

func quietLogger() *slog.Logger {
	if os.Getenv("KINESIS_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// subConfig is a subscriber configuration with the short intervals tests use.
func (e *env) subConfig(group, worker string) SubscriberConfig {
	return SubscriberConfig{
		Kinesis:            e.kin,
		DynamoDB:           e.ddb,
		Logger:             quietLogger().With("w", worker),
		ConsumerGroup:      group,
		WorkerID:           worker,
		LeaseTable:         e.table,
		FailoverTime:       2 * time.Second,
		RenewInterval:      400 * time.Millisecond,
		TakeInterval:       300 * time.Millisecond,
		ShardSyncInterval:  time.Second,
		CheckpointInterval: 100 * time.Millisecond,
		PollInterval:       50 * time.Millisecond,
		IdleBackoffMax:     200 * time.Millisecond,
		NackResendDelay:    10 * time.Millisecond,
		DrainTimeout:       2 * time.Second,
	}
}

func (e *env) publisher(t testing.TB) *Publisher {
	t.Helper()
	p, err := NewPublisher(PublisherConfig{Client: e.kin, Logger: quietLogger(), RetryBaseDelay: 5 * time.Millisecond, RetryMaxDelay: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func (e *env) subscriber(t testing.TB, cfg SubscriberConfig) *Subscriber {
	t.Helper()
	s, err := NewSubscriber(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// publishN publishes n messages with payloads "<prefix>-<i>" and partition keys spread over keys.
func publishN(t testing.TB, p *Publisher, stream, prefix string, n, keys int) []string {
	t.Helper()
	msgs := make([]*message.Message, n)
	payloads := make([]string, n)
	for i := range msgs {
		payloads[i] = fmt.Sprintf("%s-%d", prefix, i)
		msgs[i] = message.NewMessage(fmt.Sprintf("%s-uuid-%d", prefix, i), []byte(payloads[i]))
		msgs[i].Metadata.Set(MetadataPartitionKey, fmt.Sprintf("key-%d", i%keys))
	}
	if err := p.Publish(stream, msgs...); err != nil {
		t.Fatal(err)
	}
	return payloads
}

// collector acks everything it receives and records it.
type collector struct {
	mu    sync.Mutex
	byKey map[string]int // payload -> deliveries
	order map[string][]string
	all   []*message.Message
}

func newCollector() *collector {
	return &collector{byKey: map[string]int{}, order: map[string][]string{}}
}

func (c *collector) consume(ch <-chan *message.Message, ack func(*message.Message) bool) {
	for m := range ch {
		if ack != nil && !ack(m) {
			m.Nack()
			continue
		}
		c.mu.Lock()
		c.byKey[string(m.Payload)]++
		shard := m.Metadata.Get(MetadataShardID)
		c.order[shard] = append(c.order[shard], m.Metadata.Get(MetadataSequenceNumber))
		c.all = append(c.all, m)
		c.mu.Unlock()
		m.Ack()
	}
}

func (c *collector) distinct() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.byKey)
}

func (c *collector) count(payload string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byKey[payload]
}

func waitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// leasesOf reads the group's leases straight from the table.
func (e *env) leasesOf(t testing.TB, group string) map[string]lease {
	t.Helper()
	lt := &leaseTable{client: e.ddb, table: e.table, group: group, stream: e.stream}
	ls, err := lt.scan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]lease{}
	for _, l := range ls {
		out[l.ShardID] = l
	}
	return out
}
