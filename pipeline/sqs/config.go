package sqs

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// SQS's own bounds.
const (
	maxBatchEntries   = 10
	maxWaitTime       = 20 * time.Second
	maxVisibility     = 12 * time.Hour
	defaultBatchBytes = 256 * 1024
)

// SubscriberConfig configures a Subscriber. Zero fields take the defaults documented on them.
type SubscriberConfig struct {
	// Client makes the SQS calls, usually sqs.NewFromConfig(cfg). Required.
	Client SubscriberAPI
	// Logger gets failures that cannot be returned (a delete that failed for good …). Default slog.Default().
	Logger *slog.Logger
	// OnInFlight, if set, is called with the queue's name and the number of messages the subscription
	// holds (received, not yet acked or nacked) whenever that number changes; e.g. for a gauge. It
	// is called with the subscription's lock held, in order: it must be quick and must not call back
	// into the subscriber.
	OnInFlight func(queue string, n int)

	// Receivers is the number of concurrent ReceiveMessage loops per subscription. Default 2.
	Receivers int
	// MaxInFlight caps the messages one subscription holds (received, not yet acked or nacked).
	// A receiver never asks for more than the free capacity. Default 50.
	MaxInFlight int
	// VisibilityTimeout is asked for on every receive and is what heartbeats extend to. Whole
	// seconds, 1s to 12h. Default 30s.
	VisibilityTimeout time.Duration
	// WaitTime is the long-polling wait, 0 to 20s. Default 20s. A negative value means 0 (short polling).
	WaitTime time.Duration
	// DeleteBatchInterval is how long an ack (or a nack's visibility change) may wait for others
	// to fill a batch of 10 before it is sent. Default 50ms.
	DeleteBatchInterval time.Duration
	// NackBackoffInitial and NackBackoffMax set a nacked message's visibility timeout:
	// initial × 2^(receive count − 1), capped at max, rounded up to whole seconds. Defaults 1s and 1m.
	NackBackoffInitial time.Duration
	NackBackoffMax     time.Duration
	// HeartbeatInterval is how often held messages are checked; one whose visibility ends within
	// two intervals is extended by VisibilityTimeout. Must be below VisibilityTimeout/2.
	// Default VisibilityTimeout/3.
	HeartbeatInterval time.Duration
	// CloseTimeout bounds how long Close (or the end of a subscription) waits for messages already
	// handed out to be acked or nacked; the rest are released. Default 20s.
	CloseTimeout time.Duration
	// CallTimeout bounds each delete and visibility batch call. Default 10s.
	CallTimeout time.Duration
	// BatchRetries is how many times the failed entries of a delete or visibility batch are retried
	// (entries SQS blames on the sender are never retried). Default 3.
	BatchRetries int
	// RetryBackoff is the first wait before such a retry, and after a failed receive; it doubles each
	// time, up to 5s. Default 100ms.
	RetryBackoff time.Duration
	// CreateQueueAttributes are the attributes SubscribeInitialize creates a queue with. FifoQueue is
	// added for names ending in ".fifo".
	CreateQueueAttributes map[string]string
}

func (c SubscriberConfig) withDefaults() SubscriberConfig {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Receivers == 0 {
		c.Receivers = 2
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 50
	}
	if c.VisibilityTimeout == 0 {
		c.VisibilityTimeout = 30 * time.Second
	}
	if c.WaitTime == 0 {
		c.WaitTime = maxWaitTime
	} else if c.WaitTime < 0 {
		c.WaitTime = 0
	}
	if c.DeleteBatchInterval == 0 {
		c.DeleteBatchInterval = 50 * time.Millisecond
	}
	if c.NackBackoffInitial == 0 {
		c.NackBackoffInitial = time.Second
	}
	if c.NackBackoffMax == 0 {
		c.NackBackoffMax = time.Minute
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = c.VisibilityTimeout / 3
	}
	if c.CloseTimeout == 0 {
		c.CloseTimeout = 20 * time.Second
	}
	if c.CallTimeout == 0 {
		c.CallTimeout = 10 * time.Second
	}
	if c.BatchRetries == 0 {
		c.BatchRetries = 3
	}
	if c.RetryBackoff == 0 {
		c.RetryBackoff = 100 * time.Millisecond
	}
	return c
}

// Validate reports every bad field (after defaults), each as a *ConfigError.
func (c SubscriberConfig) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &ConfigError{Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	if c.Client == nil {
		bad("Client", "is required")
	}
	if c.Receivers < 1 {
		bad("Receivers", "must be at least 1, got %d", c.Receivers)
	}
	if c.MaxInFlight < 1 {
		bad("MaxInFlight", "must be at least 1, got %d", c.MaxInFlight)
	}
	if c.VisibilityTimeout < time.Second || c.VisibilityTimeout > maxVisibility || c.VisibilityTimeout%time.Second != 0 {
		bad("VisibilityTimeout", "must be whole seconds from 1s to 12h, got %s", c.VisibilityTimeout)
	}
	if c.WaitTime > maxWaitTime || c.WaitTime%time.Second != 0 {
		bad("WaitTime", "must be whole seconds from 0 to 20s, got %s", c.WaitTime)
	}
	if c.DeleteBatchInterval < 0 {
		bad("DeleteBatchInterval", "must not be negative, got %s", c.DeleteBatchInterval)
	}
	if c.NackBackoffInitial < 0 || c.NackBackoffInitial > maxVisibility {
		bad("NackBackoffInitial", "must be from 0 to 12h, got %s", c.NackBackoffInitial)
	}
	if c.NackBackoffMax < c.NackBackoffInitial || c.NackBackoffMax > maxVisibility {
		bad("NackBackoffMax", "must be from NackBackoffInitial (%s) to 12h, got %s", c.NackBackoffInitial, c.NackBackoffMax)
	}
	if c.HeartbeatInterval <= 0 || 2*c.HeartbeatInterval >= c.VisibilityTimeout {
		bad("HeartbeatInterval", "must be above 0 and below VisibilityTimeout/2 (%s), got %s", c.VisibilityTimeout/2, c.HeartbeatInterval)
	}
	if c.CloseTimeout < 0 {
		bad("CloseTimeout", "must not be negative, got %s", c.CloseTimeout)
	}
	if c.CallTimeout < 0 {
		bad("CallTimeout", "must not be negative, got %s", c.CallTimeout)
	}
	if c.BatchRetries < 0 {
		bad("BatchRetries", "must not be negative, got %d", c.BatchRetries)
	}
	if c.RetryBackoff < 0 {
		bad("RetryBackoff", "must not be negative, got %s", c.RetryBackoff)
	}
	return errors.Join(errs...)
}

// PublisherConfig configures a Publisher. Zero fields take the defaults documented on them.
type PublisherConfig struct {
	// Client makes the SQS calls, usually sqs.NewFromConfig(cfg). Required.
	Client PublisherAPI
	// Logger gets retried failures. Default slog.Default().
	Logger *slog.Logger
	// DefaultMessageGroupID is the MessageGroupId for FIFO queues when a message has no
	// MetadataMessageGroupID. Empty means such a message is an error.
	DefaultMessageGroupID string
	// MaxBatchBytes is the most one SendMessageBatch may carry (bodies plus attributes); a message
	// bigger than that is an error. Default 256 KiB, SQS's classic limit.
	MaxBatchBytes int
	// Retries is how many times the failed entries of a batch are sent again (entries SQS blames on
	// the sender are not). Default 3.
	Retries int
	// RetryBackoff is the first wait before a retry; it doubles each time, up to 5s. Default 100ms.
	RetryBackoff time.Duration
	// CallTimeout bounds each SendMessageBatch call. Default 30s.
	CallTimeout time.Duration
}

func (c PublisherConfig) withDefaults() PublisherConfig {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = defaultBatchBytes
	}
	if c.Retries == 0 {
		c.Retries = 3
	}
	if c.RetryBackoff == 0 {
		c.RetryBackoff = 100 * time.Millisecond
	}
	if c.CallTimeout == 0 {
		c.CallTimeout = 30 * time.Second
	}
	return c
}

// Validate reports every bad field (after defaults), each as a *ConfigError.
func (c PublisherConfig) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &ConfigError{Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	if c.Client == nil {
		bad("Client", "is required")
	}
	if c.DefaultMessageGroupID != "" {
		if reason := checkFIFOID(c.DefaultMessageGroupID); reason != "" {
			bad("DefaultMessageGroupID", "%s", reason)
		}
	}
	if c.MaxBatchBytes < 1024 || c.MaxBatchBytes > 1024*1024 {
		bad("MaxBatchBytes", "must be from 1 KiB to 1 MiB, got %d", c.MaxBatchBytes)
	}
	if c.Retries < 0 {
		bad("Retries", "must not be negative, got %d", c.Retries)
	}
	if c.RetryBackoff < 0 {
		bad("RetryBackoff", "must not be negative, got %s", c.RetryBackoff)
	}
	if c.CallTimeout < 0 {
		bad("CallTimeout", "must not be negative, got %s", c.CallTimeout)
	}
	return errors.Join(errs...)
}
