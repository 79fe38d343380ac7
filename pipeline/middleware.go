package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/thingpipe/thingpipe/pipeline/sqs"
)

// Metadata keys of a dead-lettered message. The message keeps its payload and UUID; its metadata is
// replaced by these keys plus correlation_id and traceparent, and the original metadata is kept as
// one JSON object. That bounds the key count to 9: with the UUID attribute pipeline/sqs adds, SQS's
// limit of 10 message attributes.
const (
	MetadataDLQReason           = "thingpipe.dlq.reason"        // the error, truncated to 1 KiB
	MetadataDLQKind             = "thingpipe.dlq.kind"          // permanent, panic, retries_exhausted, max_receives
	MetadataDLQStage            = "thingpipe.dlq.stage"         // stage name
	MetadataDLQHandler          = "thingpipe.dlq.handler"       // handler name
	MetadataDLQTopic            = "thingpipe.dlq.topic"         // the topic (queue, stream) it was read from
	MetadataDLQReceiveCount     = "thingpipe.dlq.receive_count" // SQS receive count, when known
	MetadataDLQOriginalMetadata = "thingpipe.dlq.original_metadata"
)

// Dead-letter kinds (MetadataDLQKind and the metric label).
const (
	KindPermanent        = "permanent"
	KindPanic            = "panic"
	KindRetriesExhausted = "retries_exhausted"
	KindMaxReceives      = "max_receives"
)

const maxReasonLen = 1024

// middlewares returns the stage's handler chain, outermost first.
//
// The order matters:
//
//  1. Recoverer (watermill): a safety net for panics in the middleware below; the message is nacked
//     (redelivered) and the process lives. Handler panics never get this far (see 8).
//  2. lifecycle: makes the message context end when the shutdown timeout runs out, so a stuck
//     handler's I/O is abandoned (and the message nacked) instead of outliving the process.
//  3. correlation: gives a message without a correlation id its own UUID, and passes it on to
//     anything the handler produces (watermill's CorrelationID), so logs and the dead-letter copy
//     carry it.
//  4. tracing: one span per delivery, child of the producer's traceparent, enclosing the retries and
//     the dead-letter publish so both show in the trace.
//  5. observe (metrics and logs): outside poison and retry, so it sees each delivery once with its
//     final outcome: acked, nacked, or dead-lettered (poison reports that through the context, since
//     to the router a dead-lettered message is a success to ack), and its duration includes retries.
//  6. poison: outside retry, so it only sees what retry gave up on. It dead-letters a message whose
//     receive count is over the limit before any attempt, and after the attempts a permanent error, a
//     panic, or exhausted retries; then it returns nil so the router acks the source. Retries that
//     ran out because a dependency is unavailable (IsUnavailable: no response, 5xx, throttling,
//     timeouts) or because another worker holds a claim the handler waits on (IsWaitingOnOthers)
//     are not the message's fault: it is nacked, not dead-lettered, and for SQS an outage
//     delivery is not counted against max_receives by this process (outageNacks). If the
//     dead-letter publish fails, it returns the error: the message is nacked, never lost.
//  7. retry: retries transient errors only, with exponential backoff; permanent errors and panics
//     return at once; waiting stops at shutdown or when the message context ends (then the message
//     is nacked and redelivered later).
//  8. panics: innermost, so a handler panic becomes a PanicError (permanent) that retry does not
//     repeat and poison dead-letters with its reason.
func (r *stageRunner) middlewares() []message.HandlerMiddleware {
	return []message.HandlerMiddleware{
		middleware.Recoverer,
		r.lifecycle,
		correlation,
		r.tracing,
		r.observe,
		r.poison,
		r.retry,
		r.panics,
	}
}

// lifecycle ends the message context when the pipeline's hard-stop context ends.
func (r *stageRunner) lifecycle(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		ctx, cancel := context.WithCancel(msg.Context())
		defer cancel()
		stop := context.AfterFunc(r.hardStop, cancel)
		defer stop()
		msg.SetContext(ctx)
		return h(msg)
	}
}

func correlation(h message.HandlerFunc) message.HandlerFunc {
	next := middleware.CorrelationID(h)
	return func(msg *message.Message) ([]*message.Message, error) {
		middleware.SetCorrelationID(msg.UUID, msg) // keeps an existing id
		return next(msg)
	}
}

func (r *stageRunner) tracing(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		ctx := ExtractTrace(msg.Context(), msg.Metadata)
		ctx, span := r.tracer.Start(ctx, r.stage.Name+" process",
			trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(
				attribute.String("messaging.operation.type", "process"),
				attribute.String("messaging.destination.name", r.stage.Topic),
				attribute.String("messaging.message.id", msg.UUID),
				attribute.String("thingpipe.stage", r.stage.Name),
			))
		defer span.End()
		msg.SetContext(ctx)
		out, err := h(msg)
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		} else if o := outcomeOf(msg); o != nil && o.kind != "" {
			span.SetAttributes(attribute.String("thingpipe.dead_letter.kind", o.kind))
			span.SetStatus(codes.Error, "dead-lettered: "+o.reason)
		}
		for _, m := range out {
			InjectTrace(ctx, m.Metadata)
		}
		return out, err
	}
}

// outcome is how poison tells observe that a message it returns as a success was dead-lettered.
type outcome struct{ kind, reason string }

type outcomeKey struct{}

func outcomeOf(msg *message.Message) *outcome {
	o, _ := msg.Context().Value(outcomeKey{}).(*outcome)
	return o
}

func (r *stageRunner) observe(h message.HandlerFunc) message.HandlerFunc {
	stage := r.stage.Name
	received := r.metrics.received.WithLabelValues(stage)
	acked := r.metrics.acked.WithLabelValues(stage)
	nacked := r.metrics.nacked.WithLabelValues(stage)
	inFlight := r.metrics.inFlight.WithLabelValues(stage)
	ackedTime := r.metrics.duration.WithLabelValues(stage, outcomeAcked)
	nackedTime := r.metrics.duration.WithLabelValues(stage, outcomeNacked)
	deadTime := r.metrics.duration.WithLabelValues(stage, outcomeDeadLettered)
	return func(msg *message.Message) ([]*message.Message, error) {
		start := time.Now()
		received.Inc()
		inFlight.Inc()
		defer inFlight.Dec()
		o := &outcome{}
		msg.SetContext(context.WithValue(msg.Context(), outcomeKey{}, o))

		out, err := h(msg)

		d := time.Since(start)
		ctx := msg.Context()
		level := slog.LevelDebug
		result := OutcomeAcked
		switch {
		case err != nil:
			level = slog.LevelWarn
			result = OutcomeNacked
			nacked.Inc()
			nackedTime.Observe(d.Seconds())
		case o.kind != "":
			level = slog.LevelError
			result = OutcomeDeadLettered
			r.metrics.deadLettered.WithLabelValues(stage, o.kind).Inc()
			deadTime.Observe(d.Seconds())
		default:
			acked.Inc()
			ackedTime.Observe(d.Seconds())
		}
		if r.onOutcome != nil {
			r.onOutcome(stage, msg, result)
		}
		if !r.log.Enabled(ctx, level) { // skip building attributes for a disabled level (the hot path)
			return out, err
		}
		attrs := []any{
			slog.String("message_uuid", msg.UUID),
			slog.String("correlation_id", middleware.MessageCorrelationID(msg)),
			slog.Duration("duration", d),
		}
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
			attrs = append(attrs, slog.String("trace_id", sc.TraceID().String()))
		}
		switch {
		case err != nil:
			r.log.WarnContext(ctx, "message nacked", append(attrs, slog.String("error", err.Error()))...)
		case o.kind != "":
			r.log.ErrorContext(ctx, "message dead-lettered", append(attrs,
				slog.String("kind", o.kind), slog.String("reason", o.reason),
				slog.String("dead_letter_topic", r.stage.DeadLetterTopic))...)
		default:
			r.log.DebugContext(ctx, "message handled", attrs...)
		}
		return out, err
	}
}

// receiveCount reads the SQS receive count; ok is false for messages without one (Kinesis).
func receiveCount(msg *message.Message) (n int, ok bool) {
	s := msg.Metadata.Get(sqs.MetadataReceiveCount)
	if s == "" {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

// outageNacksLimit bounds the SQS message ids a stage remembers (see outageNacks).
const outageNacksLimit = 10000

func (r *stageRunner) poison(h message.HandlerFunc) message.HandlerFunc {
	maxReceives := r.stage.Failure.MaxReceives
	return func(msg *message.Message) ([]*message.Message, error) {
		id := msg.Metadata.Get(sqs.MetadataMessageID)
		if n, ok := receiveCount(msg); ok && maxReceives > 0 && n > maxReceives {
			// Deliveries this process handed back during an outage do not count.
			if excused := r.outageNacks.get(id); id == "" || n-excused > maxReceives {
				reason := fmt.Sprintf("receive count %d exceeds max_receives %d", n, maxReceives)
				if excused > 0 {
					reason += fmt.Sprintf(" (%d deliveries handed back while a dependency was unavailable not counted)", excused)
				}
				if err := r.deadLetter(msg, KindMaxReceives, reason); err != nil {
					return nil, err
				}
				r.outageNacks.forget(id)
				return nil, nil
			}
		}
		out, err := h(msg)
		if err == nil {
			if id != "" {
				r.outageNacks.forget(id)
			}
			return out, nil
		}
		var kind string
		var pe *PanicError
		var ex *RetriesExhaustedError
		switch {
		case errors.As(err, &pe):
			kind = KindPanic
		case IsPermanent(err):
			kind = KindPermanent
		case errors.As(err, &ex) && !r.stage.Failure.NackOnExhausted && !IsUnavailable(err) && !IsWaitingOnOthers(err):
			kind = KindRetriesExhausted
		default:
			// transient, a dependency that is down, or another worker's claim (the message is
			// fine): nack, the source redelivers it (Kinesis rewinds to it, SQS after the nack
			// backoff)
			if id != "" && IsUnavailable(err) {
				r.outageNacks.add(id)
			}
			return out, err
		}
		if dlErr := r.deadLetter(msg, kind, err.Error()); dlErr != nil {
			return nil, errors.Join(err, dlErr)
		}
		if id != "" {
			r.outageNacks.forget(id)
		}
		return nil, nil
	}
}

// deadLetter publishes a copy of msg to the stage's dead-letter topic.
func (r *stageRunner) deadLetter(msg *message.Message, kind, reason string) error {
	if len(reason) > maxReasonLen {
		reason = reason[:maxReasonLen-3] + "..."
	}
	orig, jerr := json.Marshal(msg.Metadata)
	if jerr != nil {
		return fmt.Errorf("dead-letter: encoding metadata: %w", jerr)
	}
	dl := message.NewMessage(msg.UUID, msg.Payload)
	dl.Metadata = message.Metadata{
		MetadataDLQReason:           reason,
		MetadataDLQKind:             kind,
		MetadataDLQStage:            r.stage.Name,
		MetadataDLQHandler:          r.stage.HandlerName,
		MetadataDLQTopic:            r.stage.Topic,
		MetadataDLQOriginalMetadata: string(orig),
	}
	if rc := msg.Metadata.Get(sqs.MetadataReceiveCount); rc != "" {
		dl.Metadata.Set(MetadataDLQReceiveCount, rc)
	}
	if cid := middleware.MessageCorrelationID(msg); cid != "" {
		dl.Metadata.Set(middleware.CorrelationIDMetadataKey, cid)
	}
	// traceparent only: tracestate would be an 11th SQS attribute (it stays in the original metadata).
	tc := message.Metadata{}
	InjectTrace(msg.Context(), tc)
	if v := tc.Get("traceparent"); v != "" {
		dl.Metadata.Set("traceparent", v)
	}
	dl.SetContext(msg.Context())
	var err error
	if cp, ok := r.stage.DeadLetter.(contextPublisher); ok {
		err = cp.PublishContext(msg.Context(), r.stage.DeadLetterTopic, dl)
	} else {
		err = r.stage.DeadLetter.Publish(r.stage.DeadLetterTopic, dl)
	}
	if err != nil {
		return fmt.Errorf("dead-letter: publishing to %s: %w", r.stage.DeadLetterTopic, err)
	}
	if o := outcomeOf(msg); o != nil {
		o.kind, o.reason = kind, reason
	}
	return nil
}

// contextPublisher is a Publisher whose calls take a context (pipeline/sqs); the dead-letter publish
// then ends with the message's context instead of running on after the shutdown deadline.
type contextPublisher interface {
	PublishContext(ctx context.Context, topic string, msgs ...*message.Message) error
}

// shutdownError is returned when retrying stopped because the stage is shutting down; the message
// is nacked and redelivered to another (or the next) process.
type shutdownError struct{ last error }

func (e *shutdownError) Error() string {
	return fmt.Sprintf("retry abandoned at shutdown; last error: %v", e.last)
}
func (e *shutdownError) Unwrap() error { return e.last }

func (r *stageRunner) retry(h message.HandlerFunc) message.HandlerFunc {
	b := r.stage.Failure.Retry
	retries := r.metrics.retries.WithLabelValues(r.stage.Name)
	return func(msg *message.Message) ([]*message.Message, error) {
		start := time.Now()
		wait := b.Initial
		for attempt := 1; ; attempt++ {
			out, err := h(msg)
			if err == nil || IsPermanent(err) {
				return out, err
			}
			ctx := msg.Context()
			if ctx.Err() != nil {
				return out, err // the message's time is up; nack
			}
			// Full jitter in [wait/2, wait*1.5) spreads the retries of messages that failed together.
			d := wait/2 + rand.N(wait+1) // #nosec G404 -- retry jitter, not a secret
			if attempt > b.MaxRetries || (b.MaxElapsed > 0 && time.Since(start)+d > b.MaxElapsed) {
				return out, &RetriesExhaustedError{Attempts: attempt, Err: err}
			}
			retries.Inc()
			r.log.InfoContext(ctx, "retrying after transient error", slog.String("message_uuid", msg.UUID),
				slog.Int("attempt", attempt), slog.Duration("wait", d), slog.String("error", err.Error()))
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil, err
			case <-r.stopping:
				t.Stop()
				return nil, &shutdownError{last: err}
			}
			wait = min(time.Duration(float64(wait)*b.Multiplier), b.Max)
		}
	}
}

func (r *stageRunner) panics(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) (out []*message.Message, err error) {
		defer func() {
			if v := recover(); v != nil {
				stack := string(debug.Stack())
				r.log.ErrorContext(msg.Context(), "handler panicked", slog.String("message_uuid", msg.UUID),
					slog.Any("panic", v), slog.String("stack", stack))
				out, err = nil, &PanicError{Value: v, Stack: stack}
			}
		}()
		return h(msg)
	}
}
