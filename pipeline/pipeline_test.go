package pipeline

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/google/go-cmp/cmp"
)

// journal records what happened, in order, across goroutines.
type journal struct {
	mu     sync.Mutex
	events []string
}

func (j *journal) add(e string) {
	j.mu.Lock()
	j.events = append(j.events, e)
	j.mu.Unlock()
}

func (j *journal) get() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]string(nil), j.events...)
}

// recordingSubscriber notes when it is closed.
type recordingSubscriber struct {
	message.Subscriber
	j *journal
}

func (s recordingSubscriber) Close() error {
	s.j.add("subscriber closed")
	return s.Subscriber.Close()
}

// StopReceiving is what pipeline/sqs offers: stop taking messages while in-flight ones finish.
func (s recordingSubscriber) StopReceiving() { s.j.add("receiving stopped") }

func TestShutdownWaitsForInFlightHandler(t *testing.T) {
	checkNoLeaks(t)
	j := &journal{}
	entered := make(chan struct{})
	release := make(chan struct{})
	type errBox struct{ err error }
	var ctxErr atomic.Value
	f := newFixture(t, func(msg *message.Message) error {
		j.add("handler started")
		close(entered)
		<-release
		ctxErr.Store(errBox{msg.Context().Err()})
		j.add("handler done")
		return nil
	}, func(s *Stage, _ *Options) {
		s.Subscriber = recordingSubscriber{s.Subscriber, j}
		s.Drain = func(context.Context) error { j.add("drain"); return nil }
		s.Close = func(context.Context) error { j.add("stage close"); return nil }
	})
	f.start()
	f.publish("m", nil)
	<-entered

	f.cancel()
	f.cancel = nil
	select {
	case err := <-f.done:
		t.Fatalf("Run returned (%v) while a handler was in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	eventually(t, "drain", func() bool { return len(j.get()) == 3 })
	if r := f.health.Readiness(context.Background()); r.Ready || r.Stages[stageName] != "stopping" {
		t.Errorf("readiness while draining = %+v, want not ready, stage stopping", r)
	}
	close(release)
	select {
	case err := <-f.done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after the handler finished")
	}

	want := []string{"handler started", "receiving stopped", "drain", "handler done", "subscriber closed", "stage close"}
	if diff := cmp.Diff(want, j.get()); diff != "" {
		t.Errorf("shutdown order (-want +got):\n%s", diff)
	}
	if b := ctxErr.Load().(errBox); b.err != nil {
		t.Errorf("in-flight message context was cancelled during graceful shutdown: %v", b.err)
	}
	if got := f.counts(""); got != (counts{Received: 1, Acked: 1}) {
		t.Errorf("counts = %+v, want the in-flight message acked", got)
	}
	if f.health.Readiness(context.Background()).Ready {
		t.Error("ready after shutdown")
	}
}

func TestShutdownTimeoutCancelsStuckHandler(t *testing.T) {
	checkNoLeaks(t)
	entered := make(chan struct{})
	f := newFixture(t, func(msg *message.Message) error {
		close(entered)
		<-msg.Context().Done() // a handler stuck in I/O that honours its context
		return msg.Context().Err()
	}, func(_ *Stage, o *Options) { o.ShutdownTimeout = 100 * time.Millisecond })
	f.start()
	f.publish("m", nil)
	<-entered
	start := time.Now()
	err := f.stop()
	if err == nil || !strings.Contains(err.Error(), "in-flight messages did not finish within the shutdown timeout") {
		t.Fatalf("Run = %v, want a shutdown timeout error", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("shutdown took %s with a 100ms timeout", d)
	}
	f.waitCounts("", counts{Received: 1, Nacked: 1})
}

func TestRetryWaitIsAbandonedAtShutdown(t *testing.T) {
	checkNoLeaks(t)
	var calls atomic.Int32
	f := newFixture(t, func(*message.Message) error { calls.Add(1); return errors.New("throttled") },
		func(s *Stage, _ *Options) {
			s.Failure.Retry = Backoff{MaxRetries: 10, Initial: time.Hour, Max: time.Hour, Multiplier: 2}
		})
	f.start()
	f.publish("m", nil)
	eventually(t, "first attempt", func() bool { return calls.Load() == 1 })
	if err := f.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	f.waitCounts("", counts{Received: 1, Nacked: 1, Retries: 1})
	f.noDLQ()
}

// endingSubscriber's subscription ends on its own, as a subscriber does after a fatal error.
type endingSubscriber struct{ closed atomic.Bool }

func (s *endingSubscriber) Subscribe(context.Context, string) (<-chan *message.Message, error) {
	ch := make(chan *message.Message)
	close(ch)
	return ch, nil
}
func (s *endingSubscriber) Close() error { s.closed.Store(true); return nil }

type failingSubscriber struct{ endingSubscriber }

func (s *failingSubscriber) Subscribe(context.Context, string) (<-chan *message.Message, error) {
	return nil, errors.New("sqs: queue does not exist")
}

func TestStageFailuresStopThePipeline(t *testing.T) {
	for _, tt := range []struct {
		name string
		sub  interface {
			message.Subscriber
			wasClosed() bool
		}
		want string
	}{
		{"subscription ends", &endingSubscriber{}, "pipeline: stage binding stopped: its subscription ended"},
		{"subscribe fails", &failingSubscriber{}, "pipeline: stage binding: subscribing to binding-q: sqs: queue does not exist"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			checkNoLeaks(t)
			good := gochannel.NewGoChannel(gochannel.Config{}, nil)
			dlq := gochannel.NewGoChannel(gochannel.Config{}, nil)
			defer dlq.Close()
			p, err := New(Options{Logger: testLogger(t), ShutdownTimeout: 5 * time.Second},
				Stage{Name: "provisioning", Subscriber: good, Topic: "q", Handler: func(*message.Message) error { return nil }, DeadLetter: dlq},
				Stage{Name: "binding", Subscriber: tt.sub, Topic: "binding-q", Handler: func(*message.Message) error { return nil }, DeadLetter: dlq},
			)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- p.Run(context.Background()) }()
			select {
			case err := <-done:
				if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
					t.Fatalf("Run = %v, want %q", err, tt.want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Run did not return after a stage failed")
			}
			if !tt.sub.wasClosed() {
				t.Error("failed stage's subscriber not closed")
			}
		})
	}
}

func (s *endingSubscriber) wasClosed() bool { return s.closed.Load() }

// queueSubscriber is a competing-consumers queue (like SQS): every Subscribe call takes messages
// from one shared queue, one at a time until acked or nacked (a nack puts it back).
type queueSubscriber struct {
	ch     chan *message.Message
	closed chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
}

func newQueueSubscriber() *queueSubscriber {
	return &queueSubscriber{ch: make(chan *message.Message, 100), closed: make(chan struct{})}
}

func (q *queueSubscriber) Subscribe(ctx context.Context, _ string) (<-chan *message.Message, error) {
	out := make(chan *message.Message)
	q.wg.Go(func() {
		defer close(out)
		for {
			var m *message.Message
			select {
			case <-q.closed:
				return
			case <-ctx.Done():
				return
			case m = <-q.ch:
			}
			select {
			case out <- m:
			case <-q.closed:
				return
			}
			select {
			case <-m.Acked():
			case <-m.Nacked():
				q.ch <- m.Copy()
			case <-q.closed:
				return
			}
		}
	})
	return out, nil
}

func (q *queueSubscriber) Close() error {
	q.once.Do(func() { close(q.closed) })
	q.wg.Wait()
	return nil
}

func TestConcurrencyRunsParallelSubscriptions(t *testing.T) {
	checkNoLeaks(t)
	q := newQueueSubscriber()
	var active, peak atomic.Int32
	release := make(chan struct{})
	f := newFixture(t, func(*message.Message) error {
		n := active.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		<-release
		active.Add(-1)
		return nil
	}, func(s *Stage, _ *Options) {
		s.Subscriber = q
		s.Concurrency = 3
	})
	f.start()
	for i := range 5 {
		q.ch <- message.NewMessage(string(rune('a'+i)), nil)
	}
	eventually(t, "3 handlers in parallel", func() bool { return active.Load() == 3 })
	time.Sleep(20 * time.Millisecond)
	if p := peak.Load(); p != 3 {
		t.Errorf("peak concurrency %d, want 3", p)
	}
	close(release)
	f.waitCounts("", counts{Received: 5, Acked: 5})
	if err := f.stop(); err != nil {
		t.Fatal(err)
	}
}

func TestNewRejectsBadStages(t *testing.T) {
	dlq := gochannel.NewGoChannel(gochannel.Config{}, nil)
	defer dlq.Close()
	h := func(*message.Message) error { return nil }
	_, err := New(Options{},
		Stage{Name: "a", Topic: "t", Handler: h, DeadLetter: dlq},
		Stage{Name: "a", Subscriber: dlq, Topic: "t", Handler: h},
	)
	want := `pipeline: stage "a": Subscriber: must be set
stage "a": DeadLetter: must be set (every stage has a dead-letter queue)
stage "a": listed twice`
	if err == nil || err.Error() != want {
		t.Errorf("New error:\n%v\nwant:\n%s", err, want)
	}
	if _, err := New(Options{}); err == nil {
		t.Error("New with no stages succeeded")
	}
}
