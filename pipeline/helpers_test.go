package pipeline

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// testLogger writes the pipeline's logs to the test log only when the test fails or -v is set.
func testLogger(t *testing.T) *slog.Logger {
	t.Helper()
	var buf syncBuffer
	t.Cleanup(func() {
		if t.Failed() || testing.Verbose() {
			t.Logf("pipeline logs:\n%s", buf.String())
		}
	})
	return slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var _ io.Writer = (*syncBuffer)(nil)

// checkNoLeaks fails the test if goroutines started during it are still running at its end.
// Call it first in a test, so its cleanup runs last.
func checkNoLeaks(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(3 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Errorf("goroutine leak: %d goroutines before, %d after:\n%s", before, n, buf)
		}
	})
}

// fixture is one stage on gochannel: the test publishes to "in" and reads the dead-letter topic.
type fixture struct {
	t       *testing.T
	in      *gochannel.GoChannel
	dlq     *gochannel.GoChannel
	dlqMsgs <-chan *message.Message
	metrics *Metrics
	health  *Health
	p       *Pipeline
	cancel  context.CancelFunc
	done    chan error
}

const stageName = "provisioning"

func fastFailure() FailurePolicy {
	return FailurePolicy{
		Retry: Backoff{MaxRetries: 3, Initial: time.Millisecond, Max: 5 * time.Millisecond, Multiplier: 2},
	}
}

// newFixture builds a one-stage pipeline; edit changes the Stage before the Pipeline is built.
func newFixture(t *testing.T, handler func(*message.Message) error, edit func(*Stage, *Options)) *fixture {
	t.Helper()
	f := &fixture{
		t:       t,
		in:      gochannel.NewGoChannel(gochannel.Config{}, nil),
		dlq:     gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 100}, nil),
		metrics: NewMetrics(),
		done:    make(chan error, 1),
	}
	var err error
	f.dlqMsgs, err = f.dlq.Subscribe(context.Background(), "thingpipe-"+stageName+"-dlq")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.dlq.Close() })
	f.health = NewHealth(HealthOptions{Metrics: f.metrics})
	stage := Stage{
		Name: stageName, Subscriber: f.in, Topic: "in", Handler: handler,
		DeadLetter: f.dlq, Failure: fastFailure(),
	}
	opts := Options{Logger: testLogger(t), Metrics: f.metrics, Health: f.health, ShutdownTimeout: 5 * time.Second}
	if edit != nil {
		edit(&stage, &opts)
	}
	f.p, err = New(opts, stage)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// start runs the pipeline and waits until the stage is running.
func (f *fixture) start() {
	f.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	go func() { f.done <- f.p.Run(ctx) }()
	f.t.Cleanup(func() { f.stop() })
	deadline := time.Now().Add(5 * time.Second)
	for !f.health.Readiness(context.Background()).Ready {
		if time.Now().After(deadline) {
			f.t.Fatal("stage did not become ready")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stop cancels the pipeline's context and returns Run's result (once; later calls return nil).
func (f *fixture) stop() error {
	if f.cancel == nil {
		return nil
	}
	f.cancel()
	f.cancel = nil
	select {
	case err := <-f.done:
		return err
	case <-time.After(10 * time.Second):
		f.t.Fatal("pipeline did not stop")
		return nil
	}
}

func (f *fixture) publish(payload string, md map[string]string) *message.Message {
	f.t.Helper()
	msg := message.NewMessage(payload+"-uuid", []byte(payload))
	for k, v := range md {
		msg.Metadata.Set(k, v)
	}
	if err := f.in.Publish("in", msg); err != nil {
		f.t.Fatal(err)
	}
	return msg
}

func (f *fixture) nextDLQ() *message.Message {
	f.t.Helper()
	select {
	case m := <-f.dlqMsgs:
		m.Ack()
		return m
	case <-time.After(5 * time.Second):
		f.t.Fatal("no dead-letter message")
		return nil
	}
}

func (f *fixture) noDLQ() {
	f.t.Helper()
	select {
	case m := <-f.dlqMsgs:
		f.t.Fatalf("unexpected dead-letter message %s: %v", m.Payload, m.Metadata)
	case <-time.After(50 * time.Millisecond):
	}
}

// metric reads one sample from a registry: the counter, gauge or histogram count of the series
// named name with exactly the given labels (name=value pairs).
func metric(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			if len(got) != len(labels)/2 {
				continue
			}
			for i := 0; i < len(labels); i += 2 {
				if got[labels[i]] != labels[i+1] {
					continue series
				}
			}
			return sampleValue(mf.GetType(), m)
		}
		return 0
	}
	return 0 // a vector with no series yet is not gathered
}

func sampleValue(typ dto.MetricType, m *dto.Metric) float64 {
	switch typ {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue()
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue()
	case dto.MetricType_HISTOGRAM:
		return float64(m.GetHistogram().GetSampleCount())
	}
	return m.GetUntyped().GetValue()
}

// eventually polls cond until it holds or 5s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestMain(m *testing.M) { os.Exit(mainWithMoto(m)) }
