package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// Stage describes one stage: where its messages come from, what handles them and where the ones that
// cannot be handled go. The Pipeline builds one watermill router per Stage.
type Stage struct {
	// Name is the stage name (provisioning, binding, alerting, archival); it labels metrics and logs.
	Name string
	// Subscriber delivers the stage's messages. The Pipeline owns it: it closes it on shutdown, after
	// in-flight messages are done, so SQS deletes and Kinesis checkpoints are flushed and leases
	// released. Do not share one Subscriber between stages.
	Subscriber message.Subscriber
	// Topic is what Subscriber subscribes to (SQS queue name, Kinesis stream name).
	Topic string
	// Handler handles one message: nil acks it; an error that is permanent (see IsPermanent) sends
	// it to the dead-letter queue at once; any other error is transient and retried.
	Handler func(*message.Message) error
	// HandlerName names the handler in dead-letter metadata and logs (default Name).
	HandlerName string
	// DeadLetter receives poison messages on DeadLetterTopic (default "thingpipe-<Name>-dlq"). The
	// caller owns it (it may be shared by stages) and closes it after the Pipeline returns.
	DeadLetter      message.Publisher
	DeadLetterTopic string
	// Concurrency is the number of subscriptions the router runs on Subscriber (default 1).
	Concurrency int
	// Failure says how failures are retried and when a message is dead-lettered.
	Failure FailurePolicy
	// Drain, if set, is called once the stage has stopped receiving, while in-flight messages are
	// still being handled: a handler that holds messages until a batch is written (archival) flushes
	// here so they can finish.
	Drain func(context.Context) error
	// Close, if set, is called last, after the subscriber is closed, within the shutdown timeout.
	Close func(context.Context) error
}

// FailurePolicy says how a stage treats failing messages.
type FailurePolicy struct {
	// MaxReceives: a message whose SQS receive count is above it is dead-lettered without running the
	// handler again (a message that crashes or hangs the process never reaches "retries exhausted").
	// Deliveries this process nacked because a dependency was unavailable (IsUnavailable) are not
	// counted. 0 disables the check.
	MaxReceives int
	// Retry bounds in-process retries of transient errors.
	Retry Backoff
	// NackOnExhausted hands a message whose retries are exhausted back to its source instead of
	// dead-lettering it (SQS: redelivered after the visibility timeout, up to MaxReceives).
	NackOnExhausted bool
}

// Backoff is an exponential backoff with jitter, bounded by attempts and by elapsed time.
type Backoff struct {
	MaxRetries int           // retries after the first attempt
	Initial    time.Duration // first wait
	Max        time.Duration // longest wait
	Multiplier float64       // growth per retry
	MaxElapsed time.Duration // no retry starts after this much time since the first attempt; 0 = no limit
}

// FailurePolicy converts the stage's configuration.
func (c StageConfig) FailurePolicy() FailurePolicy {
	return FailurePolicy{
		MaxReceives: c.MaxReceives,
		Retry: Backoff{
			MaxRetries: c.Retry.MaxRetries,
			Initial:    c.Retry.InitialInterval.D(),
			Max:        c.Retry.MaxInterval.D(),
			Multiplier: c.Retry.Multiplier,
			MaxElapsed: c.Retry.MaxElapsed.D(),
		},
		NackOnExhausted: c.OnRetriesExhausted == ExhaustedNack,
	}
}

func (s Stage) withDefaults() Stage {
	if s.HandlerName == "" {
		s.HandlerName = s.Name
	}
	if s.DeadLetterTopic == "" {
		s.DeadLetterTopic = "thingpipe-" + s.Name + "-dlq"
	}
	if s.Concurrency == 0 {
		s.Concurrency = 1
	}
	if s.Failure.Retry.Multiplier == 0 {
		s.Failure.Retry.Multiplier = 2
	}
	if s.Failure.Retry.Initial == 0 {
		s.Failure.Retry.Initial = 100 * time.Millisecond
	}
	if s.Failure.Retry.Max == 0 {
		s.Failure.Retry.Max = max(s.Failure.Retry.Initial, 5*time.Second)
	}
	return s
}

func (s Stage) validate() error {
	var errs []error
	bad := func(field, msg string) {
		errs = append(errs, fmt.Errorf("stage %q: %s: %s", s.Name, field, msg))
	}
	if s.Name == "" {
		bad("Name", "must be set")
	}
	if s.Subscriber == nil {
		bad("Subscriber", "must be set")
	}
	if s.Topic == "" {
		bad("Topic", "must be set")
	}
	if s.Handler == nil {
		bad("Handler", "must be set")
	}
	if s.DeadLetter == nil {
		bad("DeadLetter", "must be set (every stage has a dead-letter queue)")
	}
	if s.Concurrency < 1 {
		bad("Concurrency", "must be at least 1")
	}
	if s.Failure.MaxReceives < 0 || s.Failure.Retry.MaxRetries < 0 || s.Failure.Retry.Multiplier < 1 {
		bad("Failure", "MaxReceives and Retry.MaxRetries must be >= 0 and Retry.Multiplier >= 1")
	}
	return errors.Join(errs...)
}
