package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/google/go-cmp/cmp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/thingpipe/thingpipe/pipeline/sqs"
)

// badPayload stands in for events/' typed decode error: any error with Permanent() == true.
type badPayload struct{ field string }

func (e badPayload) Error() string   { return "bad payload: " + e.field + " is missing" }
func (e badPayload) Permanent() bool { return true }

// counts reads the per-stage outcome counters.
type counts struct{ Received, Acked, Nacked, DeadLettered, Retries float64 }

func (f *fixture) counts(kind string) counts {
	reg := f.metrics.Registry()
	c := counts{
		Received: metric(f.t, reg, "thingpipe_messages_received_total", "stage", stageName),
		Acked:    metric(f.t, reg, "thingpipe_messages_acked_total", "stage", stageName),
		Nacked:   metric(f.t, reg, "thingpipe_messages_nacked_total", "stage", stageName),
		Retries:  metric(f.t, reg, "thingpipe_handler_retries_total", "stage", stageName),
	}
	if kind != "" {
		c.DeadLettered = metric(f.t, reg, "thingpipe_messages_dead_lettered_total", "stage", stageName, "kind", kind)
	}
	return c
}

func (f *fixture) waitCounts(kind string, want counts) {
	f.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := f.counts(kind)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("metrics (-want +got):\n%s", cmp.Diff(want, got))
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestPanicIsDeadLetteredAndNextMessageFlows(t *testing.T) {
	checkNoLeaks(t)
	var handled sync.Map
	f := newFixture(t, func(msg *message.Message) error {
		if string(msg.Payload) == "boom" {
			panic("nil map in handler")
		}
		handled.Store(string(msg.Payload), true)
		return nil
	}, nil)
	f.start()

	f.publish("boom", map[string]string{"origin": "test"})
	dl := f.nextDLQ()
	f.publish("ok", nil)
	eventually(t, "ok handled", func() bool { _, ok := handled.Load("ok"); return ok })

	if string(dl.Payload) != "boom" || dl.UUID != "boom-uuid" {
		t.Errorf("dead-letter message = %s %q, want the original UUID and payload", dl.UUID, dl.Payload)
	}
	for k, want := range map[string]string{
		MetadataDLQKind:    KindPanic,
		MetadataDLQStage:   stageName,
		MetadataDLQHandler: stageName,
		MetadataDLQTopic:   "in",
	} {
		if got := dl.Metadata.Get(k); got != want {
			t.Errorf("metadata %s = %q, want %q", k, got, want)
		}
	}
	if r := dl.Metadata.Get(MetadataDLQReason); !strings.HasPrefix(r, "panic: nil map in handler") {
		t.Errorf("reason = %q, want the panic value", r)
	}
	var orig map[string]string
	if err := json.Unmarshal([]byte(dl.Metadata.Get(MetadataDLQOriginalMetadata)), &orig); err != nil || orig["origin"] != "test" {
		t.Errorf("original metadata = %q (%v), want it to carry origin=test", dl.Metadata.Get(MetadataDLQOriginalMetadata), err)
	}
	f.waitCounts(KindPanic, counts{Received: 2, Acked: 1, DeadLettered: 1})
	if err := f.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestTransientErrorIsRetriedThenSucceeds(t *testing.T) {
	checkNoLeaks(t)
	var calls atomic.Int32
	f := newFixture(t, func(msg *message.Message) error {
		if calls.Add(1) <= 2 {
			return errors.New("dynamodb: throttled")
		}
		return nil
	}, nil)
	f.start()
	f.publish("m", nil)
	f.waitCounts("", counts{Received: 1, Acked: 1, Retries: 2})
	f.noDLQ()
	if n := calls.Load(); n != 3 {
		t.Errorf("handler called %d times, want 3", n)
	}
	if err := f.stop(); err != nil {
		t.Fatal(err)
	}
}

func TestPermanentErrorIsDeadLetteredAtOnce(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
	}{
		{"Permanent()", Permanent(errors.New("unknown event type"))},
		{"typed error wrapped by the handler", fmt.Errorf("decoding registry event: %w", badPayload{"thingName"})},
	} {
		t.Run(tt.name, func(t *testing.T) {
			checkNoLeaks(t)
			var calls atomic.Int32
			f := newFixture(t, func(*message.Message) error { calls.Add(1); return tt.err }, nil)
			f.start()
			f.publish("bad", nil)
			dl := f.nextDLQ()
			if got := dl.Metadata.Get(MetadataDLQKind); got != KindPermanent {
				t.Errorf("kind = %q, want permanent", got)
			}
			if got := dl.Metadata.Get(MetadataDLQReason); got != tt.err.Error() {
				t.Errorf("reason = %q, want %q", got, tt.err.Error())
			}
			f.waitCounts(KindPermanent, counts{Received: 1, DeadLettered: 1})
			if n := calls.Load(); n != 1 {
				t.Errorf("handler called %d times, want 1 (no retries)", n)
			}
		})
	}
}

func TestReceiveCountOverMaxIsDeadLetteredWithoutRunningHandler(t *testing.T) {
	checkNoLeaks(t)
	var handled sync.Map
	f := newFixture(t, func(msg *message.Message) error {
		handled.Store(string(msg.Payload), true)
		return nil
	}, func(s *Stage, _ *Options) { s.Failure.MaxReceives = 5 })
	f.start()

	f.publish("sixth", map[string]string{sqs.MetadataReceiveCount: "6"})
	dl := f.nextDLQ()
	f.publish("fifth", map[string]string{sqs.MetadataReceiveCount: "5"})
	eventually(t, "fifth handled", func() bool { _, ok := handled.Load("fifth"); return ok })

	if _, ok := handled.Load("sixth"); ok {
		t.Error("handler ran for a message over max receives")
	}
	if got := dl.Metadata.Get(MetadataDLQKind); got != KindMaxReceives {
		t.Errorf("kind = %q, want max_receives", got)
	}
	if got := dl.Metadata.Get(MetadataDLQReceiveCount); got != "6" {
		t.Errorf("receive count = %q, want 6", got)
	}
	if got, want := dl.Metadata.Get(MetadataDLQReason), "receive count 6 exceeds max_receives 5"; got != want {
		t.Errorf("reason = %q, want %q", got, want)
	}
	f.waitCounts(KindMaxReceives, counts{Received: 2, Acked: 1, DeadLettered: 1})
}

func TestRetriesExhausted(t *testing.T) {
	t.Run("dead_letter", func(t *testing.T) {
		checkNoLeaks(t)
		var calls atomic.Int32
		f := newFixture(t, func(*message.Message) error { calls.Add(1); return errors.New("s3: 503") }, nil)
		f.start()
		f.publish("m", nil)
		dl := f.nextDLQ()
		if got, want := dl.Metadata.Get(MetadataDLQReason), "retries exhausted after 4 attempts: s3: 503"; got != want {
			t.Errorf("reason = %q, want %q", got, want)
		}
		f.waitCounts(KindRetriesExhausted, counts{Received: 1, DeadLettered: 1, Retries: 3})
		if n := calls.Load(); n != 4 {
			t.Errorf("handler called %d times, want 1 + 3 retries", n)
		}
	})
	t.Run("nack", func(t *testing.T) {
		checkNoLeaks(t)
		var calls atomic.Int32
		f := newFixture(t, func(*message.Message) error {
			if calls.Add(1) <= 4 { // the whole first delivery fails
				return errors.New("device not active yet")
			}
			return nil
		}, func(s *Stage, _ *Options) { s.Failure.NackOnExhausted = true })
		f.start()
		f.publish("m", nil) // gochannel redelivers a nacked message at once
		f.waitCounts(KindRetriesExhausted, counts{Received: 2, Nacked: 1, Acked: 1, Retries: 3})
		f.noDLQ()
	})
	t.Run("max elapsed", func(t *testing.T) {
		checkNoLeaks(t)
		var calls atomic.Int32
		f := newFixture(t, func(*message.Message) error { calls.Add(1); return errors.New("timeout") },
			func(s *Stage, _ *Options) {
				s.Failure.Retry = Backoff{MaxRetries: 1000, Initial: 20 * time.Millisecond, Max: 20 * time.Millisecond, Multiplier: 1, MaxElapsed: 50 * time.Millisecond}
			})
		f.start()
		f.publish("m", nil)
		dl := f.nextDLQ()
		if n := calls.Load(); n < 2 || n > 6 {
			t.Errorf("handler called %d times; with 10-30ms waits within 50ms expect 2 to 6", n)
		}
		if got := dl.Metadata.Get(MetadataDLQKind); got != KindRetriesExhausted {
			t.Errorf("kind = %q", got)
		}
	})
}

// failingPublisher fails its first n publishes, then delegates.
type failingPublisher struct {
	message.Publisher
	fails atomic.Int32
}

func (p *failingPublisher) Publish(topic string, msgs ...*message.Message) error {
	if p.fails.Add(-1) >= 0 {
		return errors.New("sqs: connection refused")
	}
	return p.Publisher.Publish(topic, msgs...)
}

func TestDeadLetterPublishFailureNacks(t *testing.T) {
	checkNoLeaks(t)
	f := newFixture(t, func(*message.Message) error { return Permanent(errors.New("bad")) }, func(s *Stage, _ *Options) {
		fp := &failingPublisher{Publisher: s.DeadLetter}
		fp.fails.Store(1)
		s.DeadLetter = fp
	})
	f.start()
	f.publish("m", nil)
	dl := f.nextDLQ() // the redelivery
	if string(dl.Payload) != "m" {
		t.Errorf("payload %q", dl.Payload)
	}
	f.waitCounts(KindPermanent, counts{Received: 2, Nacked: 1, DeadLettered: 1})
}

func TestCorrelationAndTraceContextReachTheDeadLetterQueue(t *testing.T) {
	checkNoLeaks(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	f := newFixture(t, func(msg *message.Message) error {
		if !trace.SpanContextFromContext(msg.Context()).IsValid() {
			return Permanent(errors.New("handler saw no span"))
		}
		return Permanent(errors.New("bad"))
	}, func(_ *Stage, o *Options) { o.TracerProvider = tp })
	f.start()

	const parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	f.publish("with", map[string]string{"traceparent": parent, middleware.CorrelationIDMetadataKey: "corr-1"})
	dl := f.nextDLQ()
	if got := dl.Metadata.Get(MetadataDLQReason); got != "bad" {
		t.Fatalf("reason = %q", got)
	}
	if got := dl.Metadata.Get(middleware.CorrelationIDMetadataKey); got != "corr-1" {
		t.Errorf("correlation id = %q, want corr-1", got)
	}
	tpHeader := dl.Metadata.Get("traceparent")
	if !strings.HasPrefix(tpHeader, "00-0af7651916cd43dd8448eb211c80319c-") || strings.Contains(tpHeader, "b7ad6b7169203331") {
		t.Errorf("dead-letter traceparent = %q, want the same trace with the stage's span as parent", tpHeader)
	}
	eventually(t, "span ended", func() bool { return len(rec.Ended()) == 1 })
	span := rec.Ended()[0]
	if span.Parent().SpanID().String() != "b7ad6b7169203331" || span.SpanKind() != trace.SpanKindConsumer {
		t.Errorf("span parent = %s kind %s, want the producer's span b7ad6b7169203331, consumer", span.Parent().SpanID(), span.SpanKind())
	}
	if !strings.Contains(tpHeader, span.SpanContext().SpanID().String()) {
		t.Errorf("dead-letter traceparent %q does not name the stage span %s", tpHeader, span.SpanContext().SpanID())
	}

	// A message without a correlation id gets its own UUID.
	f.publish("without", nil)
	dl = f.nextDLQ()
	if got := dl.Metadata.Get(middleware.CorrelationIDMetadataKey); got != "without-uuid" {
		t.Errorf("correlation id = %q, want the message UUID", got)
	}
}

// With tracing off (no-op provider) an incoming trace context still passes through unchanged.
func TestTraceContextPassesThroughWithoutExporter(t *testing.T) {
	checkNoLeaks(t)
	var seen atomic.Value
	f := newFixture(t, func(msg *message.Message) error {
		md := message.Metadata{}
		InjectTrace(msg.Context(), md) // what an outcome publisher does
		seen.Store(md.Get("traceparent"))
		return nil
	}, nil)
	f.start()
	const parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	f.publish("m", map[string]string{"traceparent": parent})
	eventually(t, "handled", func() bool { return seen.Load() != nil })
	if got := seen.Load().(string); got != parent {
		t.Errorf("outcome traceparent = %q, want %q", got, parent)
	}
}

func TestTracePublisherInjectsFromMessageContext(t *testing.T) {
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled,
	})
	var got message.Metadata
	pub := TracePublisher(publisherFunc(func(_ string, msgs ...*message.Message) error {
		got = msgs[0].Metadata
		return nil
	}))
	msg := message.NewMessage("1", nil)
	msg.SetContext(trace.ContextWithSpanContext(context.Background(), sc))
	if err := pub.Publish("events", msg); err != nil {
		t.Fatal(err)
	}
	if want := "00-01000000000000000000000000000000-0200000000000000-01"; got.Get("traceparent") != want {
		t.Errorf("traceparent = %q, want %q", got.Get("traceparent"), want)
	}
}

type publisherFunc func(topic string, msgs ...*message.Message) error

func (f publisherFunc) Publish(topic string, msgs ...*message.Message) error {
	return f(topic, msgs...)
}
func (publisherFunc) Close() error { return nil }

func TestLongReasonIsTruncatedAndMetadataStaysWithinSQSLimit(t *testing.T) {
	checkNoLeaks(t)
	long := strings.Repeat("x", 5000)
	f := newFixture(t, func(*message.Message) error { return Permanent(errors.New(long)) }, nil)
	f.start()
	md := map[string]string{sqs.MetadataReceiveCount: "1", sqs.MetadataMessageID: "id", sqs.MetadataSentTimestamp: "1",
		"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate": "a=b",
		middleware.CorrelationIDMetadataKey: "c", "k1": "1", "k2": "2", "k3": "3", "k4": "4"}
	f.publish("m", md)
	dl := f.nextDLQ()
	if n := len(dl.Metadata.Get(MetadataDLQReason)); n != maxReasonLen {
		t.Errorf("reason length %d, want %d", n, maxReasonLen)
	}
	if n := len(dl.Metadata); n > sqs.MaxAttributes-1 {
		t.Errorf("dead-letter message has %d metadata keys; SQS allows %d attributes, one of them the UUID: %v", n, sqs.MaxAttributes, dl.Metadata)
	}
}

func TestOnOutcomeSeesEveryDeliveryOnce(t *testing.T) {
	checkNoLeaks(t)
	var flaky atomic.Int32
	var mu sync.Mutex
	got := map[string][]string{}
	f := newFixture(t, func(msg *message.Message) error {
		switch string(msg.Payload) {
		case "bad":
			return badPayload{field: "thingName"}
		case "flaky":
			if flaky.Add(1) == 1 {
				return errors.New("sqs: throttled") // nacked, then redelivered and acked
			}
		}
		return nil
	}, func(s *Stage, o *Options) {
		s.Failure.Retry.MaxRetries = 0
		s.Failure.NackOnExhausted = true
		o.OnOutcome = func(stage string, msg *message.Message, outcome string) {
			mu.Lock()
			defer mu.Unlock()
			got[stage+" "+string(msg.Payload)] = append(got[stage+" "+string(msg.Payload)], outcome)
		}
	})
	f.start()
	for _, p := range []string{"ok", "bad", "flaky"} {
		f.publish(p, nil)
	}
	f.nextDLQ()
	f.waitCounts(KindPermanent, counts{Received: 4, Acked: 2, Nacked: 1, DeadLettered: 1})
	if err := f.stop(); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		stageName + " ok":    {OutcomeAcked},
		stageName + " bad":   {OutcomeDeadLettered},
		stageName + " flaky": {OutcomeNacked, OutcomeAcked},
	}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s", diff)
	}
}
