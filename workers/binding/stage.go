package binding

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/thingpipe/thingpipe/events"
	tpsqs "github.com/thingpipe/thingpipe/pipeline/sqs"
)

// Defaults from DESIGN.md.
const (
	DefaultBindingsTable = "thingpipe-bindings"
	DefaultUserIndex     = "byUser"
	DefaultDevicesTable  = "thingpipe-devices"
	DefaultSource        = "thingpipe/binding"
)

// ErrNotActiveYet is returned (wrapped, retryable) while a request waits for its device to become
// ACTIVE.
var ErrNotActiveYet = errors.New("device not active yet")

// Config configures the stage.
type Config struct {
	BindingsTable string `json:"bindingsTable"`
	UserIndex     string `json:"userIndex"`
	DevicesTable  string `json:"devicesTable"`
	Source        string `json:"source"`
	// ActivationDeadline is how long after a request was first sent it may wait for its device to
	// become ACTIVE before it is rejected.
	ActivationDeadline time.Duration    `json:"activationDeadline"`
	Logger             *slog.Logger     `json:"-"`
	Now                func() time.Time `json:"-"`
}

func (c Config) withDefaults() Config {
	if c.BindingsTable == "" {
		c.BindingsTable = DefaultBindingsTable
	}
	if c.UserIndex == "" {
		c.UserIndex = DefaultUserIndex
	}
	if c.DevicesTable == "" {
		c.DevicesTable = DefaultDevicesTable
	}
	if c.Source == "" {
		c.Source = DefaultSource
	}
	if c.ActivationDeadline == 0 {
		c.ActivationDeadline = 5 * time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate reports the first bad field.
func (c Config) Validate() error {
	if c.ActivationDeadline < 0 {
		return fmt.Errorf("binding config: activationDeadline %s is negative", c.ActivationDeadline)
	}
	return nil
}

// Store binds and reads device states.
type Store interface {
	Bind(ctx context.Context, thing, user, requestID string, nowMs int64) (Binding, error)
	DeviceStatus(ctx context.Context, thing string) (DeviceStatus, error)
}

// EventPublisher publishes outcome events.
type EventPublisher interface {
	Publish(ctx context.Context, env events.Envelope) error
}

// Stage is the binding stage.
type Stage struct {
	cfg   Config
	store Store
	pub   EventPublisher
}

// New returns the stage.
func New(cfg Config, store Store, pub EventPublisher) (*Stage, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if store == nil || pub == nil {
		return nil, errors.New("binding: store and publisher are required")
	}
	return &Stage{cfg: cfg.withDefaults(), store: store, pub: pub}, nil
}

// Handle is the watermill handler for SQS thingpipe-binding. The deadline is measured from the SQS
// SentTimestamp metadata; without it (another transport) from now, so such a request is retried
// until the pipeline's retry limit dead-letters it.
func (s *Stage) Handle(msg *message.Message) error {
	now := s.cfg.Now()
	sent := now
	if v := msg.Metadata.Get(tpsqs.MetadataSentTimestamp); v != "" {
		if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
			sent = time.UnixMilli(ms)
		}
	}
	return s.Process(msg.Context(), msg.Payload, sent)
}

// Process handles one binding request first sent at sent.
func (s *Stage) Process(ctx context.Context, payload []byte, sent time.Time) error {
	req, err := events.DecodeBindingRequest(payload)
	if err != nil {
		return err
	}
	if req.PayloadUserIgnored {
		s.cfg.Logger.WarnContext(ctx, "binding request named another user than its topic; the topic's user is used",
			"request", req.RequestID, "thing", req.ThingName, "user", req.UserID)
	}
	dev, err := s.store.DeviceStatus(ctx, req.ThingName)
	if err != nil {
		return fmt.Errorf("binding request %s: %w", req.RequestID, err)
	}
	now := s.cfg.Now()
	d := Decide(dev, sent, now, s.cfg.ActivationDeadline)
	switch d.Action {
	case RetryLater:
		return fmt.Errorf("binding request %s for %s: %w (state %q, waiting until %s)", req.RequestID, req.ThingName, ErrNotActiveYet, dev.State, d.Until.UTC().Format(time.RFC3339))
	case Reject:
		return s.reject(ctx, req, d.Reason, "", now)
	}
	b, err := s.store.Bind(ctx, req.ThingName, req.UserID, req.RequestID, now.UnixMilli())
	if errors.Is(err, ErrAlreadyBound) {
		return s.reject(ctx, req, events.ReasonAlreadyBound, "", now)
	}
	if err != nil {
		return fmt.Errorf("binding request %s: %w", req.RequestID, err)
	}
	env, err := CompletedEvent(s.cfg.Source, req, b)
	if err != nil {
		return events.Permanent("bad_binding", err)
	}
	if err := s.pub.Publish(ctx, env); err != nil {
		return fmt.Errorf("binding request %s: %w", req.RequestID, err)
	}
	s.cfg.Logger.InfoContext(ctx, "device bound", "thing", req.ThingName, "user", req.UserID, "request", req.RequestID)
	return nil
}

func (s *Stage) reject(ctx context.Context, req events.BindingRequest, reason, detail string, now time.Time) error {
	env, err := RejectedEvent(s.cfg.Source, req, reason, detail, now)
	if err != nil {
		return events.Permanent("bad_binding", err)
	}
	if err := s.pub.Publish(ctx, env); err != nil {
		return fmt.Errorf("binding request %s: %w", req.RequestID, err)
	}
	s.cfg.Logger.InfoContext(ctx, "binding rejected", "thing", req.ThingName, "user", req.UserID, "request", req.RequestID, "reason", reason)
	return nil
}
