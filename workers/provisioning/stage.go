package provisioning

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/thingpipe/thingpipe/events"
	"github.com/thingpipe/thingpipe/workers/claim"
	"github.com/thingpipe/thingpipe/workers/internal/ddbitem"
)

// Defaults from DESIGN.md.
const (
	DefaultDevicesTable = "thingpipe-devices"
	DefaultSource       = "thingpipe/provisioning"
)

// Config configures the stage. The zero value plus defaults is the DESIGN.md setup.
type Config struct {
	// DevicesTable is the DynamoDB table of devices (key thingName).
	DevicesTable string `json:"devicesTable"`
	// Source is the envelope source of published events.
	Source string `json:"source"`
	// NotifyLease is how long a worker holds the claim to publish device.activated; a crashed
	// worker's claim is taken over after it. Publishing is given half of it.
	NotifyLease time.Duration `json:"notifyLease"`
	Logger      *slog.Logger  `json:"-"`
	// Now is the clock (tests); default time.Now.
	Now func() time.Time `json:"-"`
}

func (c Config) withDefaults() Config {
	if c.DevicesTable == "" {
		c.DevicesTable = DefaultDevicesTable
	}
	if c.Source == "" {
		c.Source = DefaultSource
	}
	if c.NotifyLease == 0 {
		c.NotifyLease = 30 * time.Second
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
	c = c.withDefaults()
	if c.NotifyLease < 10*time.Millisecond {
		return fmt.Errorf("provisioning config: notifyLease %s is too short", c.NotifyLease)
	}
	return nil
}

// Store holds devices. Update must apply change with optimistic concurrency (see ddbitem.Table).
type Store interface {
	Update(ctx context.Context, thing string, change func(d *Device, exists bool) (bool, error)) (Device, bool, error)
	Get(ctx context.Context, thing string) (Device, bool, error)
	// MarkActivationNotified records that the activation event id was published, in one write.
	MarkActivationNotified(ctx context.Context, thing, id string) error
}

// EventPublisher publishes outcome events (SNS thingpipe-events in production).
type EventPublisher interface {
	Publish(ctx context.Context, env events.Envelope) error
}

// DynamoStore is the Store on DynamoDB.
type DynamoStore struct {
	t ddbitem.Table[Device]
}

// NewDynamoStore returns a store on table (key thingName).
func NewDynamoStore(client ddbitem.Client, table string) *DynamoStore {
	return &DynamoStore{t: ddbitem.Table[Device]{Client: client, Name: table, KeyAttr: "thingName"}}
}

// MarkActivationNotified implements Store.
func (s *DynamoStore) MarkActivationNotified(ctx context.Context, thing, id string) error {
	_, err := s.t.MarkNotified(ctx, thing, "activation", id)
	return err
}

// Update implements Store.
func (s *DynamoStore) Update(ctx context.Context, thing string, change func(*Device, bool) (bool, error)) (Device, bool, error) {
	return s.t.Update(ctx, thing, change)
}

// Get implements Store.
func (s *DynamoStore) Get(ctx context.Context, thing string) (Device, bool, error) {
	d, _, found, err := s.t.Get(ctx, thing)
	return d, found, err
}

// Stage is the provisioning-completion stage.
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
		return nil, errors.New("provisioning: store and publisher are required")
	}
	return &Stage{cfg: cfg.withDefaults(), store: store, pub: pub}, nil
}

// Handle is the watermill handler (message.NoPublishHandlerFunc) for SQS thingpipe-provisioning.
func (s *Stage) Handle(msg *message.Message) error {
	return s.Process(msg.Context(), msg.Payload)
}

// ErrNotifying is returned (wrapped, retryable) while another worker is publishing the device's
// device.activated event; the retry finds it published and acks.
var ErrNotifying = claim.ErrClaimedElsewhere

// Process handles one raw registry or presence event.
func (s *Stage) Process(ctx context.Context, payload []byte) error {
	in, err := events.DecodeProvisioning(payload)
	if err != nil {
		return err
	}
	thing := in.ThingName()
	owner := uuid.NewString()
	var claimed bool
	dev, wrote, err := s.store.Update(ctx, thing, func(d *Device, _ bool) (bool, error) {
		claimed = false
		changed := d.Apply(in)
		// Claim the owed activation in the same write when possible, saving a round trip.
		if d.Activation.Pending() && d.Activation.Claim(owner, s.cfg.Now(), s.cfg.NotifyLease) == nil {
			claimed, changed = true, true
		}
		return changed, nil
	})
	if err != nil {
		return fmt.Errorf("provisioning %s: %w", thing, err)
	}
	if wrote {
		s.cfg.Logger.DebugContext(ctx, "device updated", "thing", thing, "state", dev.State)
	}
	if !dev.Activation.Pending() {
		return nil
	}
	if !claimed {
		return fmt.Errorf("provisioning %s: device.activated: %w", thing, ErrNotifying)
	}
	return s.notify(ctx, dev, owner)
}

func (s *Stage) notify(ctx context.Context, dev Device, owner string) error {
	env, err := dev.ActivatedEvent(s.cfg.Source)
	if err != nil {
		return events.Permanent("bad_device_record", err)
	}
	pctx, cancel := context.WithTimeout(ctx, s.cfg.NotifyLease/2)
	err = s.pub.Publish(pctx, env)
	cancel()
	if err != nil {
		return fmt.Errorf("provisioning %s: %w", dev.ThingName, err)
	}
	// A crash here re-sends the same event (same id) after the lease: the documented duplicate window.
	if err := s.store.MarkActivationNotified(ctx, dev.ThingName, dev.Activation.ID); err != nil {
		return fmt.Errorf("provisioning %s: marking device.activated sent: %w", dev.ThingName, err)
	}
	s.cfg.Logger.InfoContext(ctx, "device activated", "thing", dev.ThingName, "event", env.ID)
	return nil
}
