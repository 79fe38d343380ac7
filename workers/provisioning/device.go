// Package provisioning is the provisioning-completion stage: it reads AWS IoT registry events and
// presence (connected) events from SQS thingpipe-provisioning and keeps each device's state in
// DynamoDB thingpipe-devices. A thing is REGISTERED once its registry event arrived, ACTIVE once it
// has also connected (in either order), and device.activated is published once per device.
package provisioning

import (
	"maps"
	"time"

	"github.com/thingpipe/thingpipe/events"
	"github.com/thingpipe/thingpipe/workers/claim"
)

// State of a device. ACTIVE is terminal: nothing moves a device out of it.
type State string

const (
	// StateConnected: the thing connected but its registry event has not arrived yet.
	StateConnected State = "CONNECTED"
	// StateRegistered: the registry event arrived; the thing has not connected yet.
	StateRegistered State = "REGISTERED"
	// StateActive: registered and connected.
	StateActive State = "ACTIVE"
)

// Device is one item of thingpipe-devices (key thingName). Times are epoch milliseconds.
type Device struct {
	ThingName        string            `dynamodbav:"thingName"`
	State            State             `dynamodbav:"state"`
	ThingID          string            `dynamodbav:"thingId,omitempty"`
	Attributes       map[string]string `dynamodbav:"attributes,omitempty"`
	RegistryVersion  int64             `dynamodbav:"registryVersion,omitempty"`
	RegisteredAt     int64             `dynamodbav:"registeredAt,omitempty"`
	FirstConnectedAt int64             `dynamodbav:"firstConnectedAt,omitempty"`
	LastConnectedAt  int64             `dynamodbav:"lastConnectedAt,omitempty"`
	ActivatedAt      int64             `dynamodbav:"activatedAt,omitempty"`
	// Activation is the device.activated notification owed since the device became ACTIVE;
	// activation.notified is true once it was published.
	Activation claim.Notice `dynamodbav:"activation,omitempty"`
}

// Apply folds one input into the device and reports whether anything changed. It is idempotent
// (a replay changes nothing) and order-independent: registration and first connection keep the
// earliest timestamp seen, the last connection the latest, and the state only moves forward.
func (d *Device) Apply(in events.ProvisioningInput) bool {
	before := d.snapshot()
	switch {
	case in.Registry != nil:
		r := in.Registry
		if r.Operation == events.OperationDeleted {
			// Deletion is out of scope: a deleted thing keeps its record (see docs/stages.md).
			return false
		}
		ts := r.Timestamp.UnixMilli()
		if d.RegisteredAt == 0 || ts < d.RegisteredAt {
			d.RegisteredAt = ts
		}
		// The registry's versionNumber orders attribute changes; take the newest.
		if d.RegistryVersion == 0 && d.ThingID == "" || r.VersionNumber > d.RegistryVersion {
			d.RegistryVersion = r.VersionNumber
			if r.ThingID != "" {
				d.ThingID = r.ThingID
			}
			if r.Attributes != nil {
				d.Attributes = maps.Clone(r.Attributes)
			}
		}
	case in.Presence != nil:
		if in.Presence.EventType != events.PresenceConnected {
			return false
		}
		ts := in.Presence.Timestamp.UnixMilli()
		if d.FirstConnectedAt == 0 || ts < d.FirstConnectedAt {
			d.FirstConnectedAt = ts
		}
		if ts > d.LastConnectedAt {
			d.LastConnectedAt = ts
		}
	default:
		return false
	}
	d.ThingName = in.ThingName()
	d.advance()
	return !d.equal(before)
}

func (d *Device) advance() {
	if d.State == StateActive {
		return
	}
	switch {
	case d.RegisteredAt != 0 && d.FirstConnectedAt != 0:
		d.State = StateActive
		d.ActivatedAt = max(d.RegisteredAt, d.FirstConnectedAt)
		d.Activation = claim.Owe(ActivationEventID(d.ThingName))
	case d.RegisteredAt != 0:
		d.State = StateRegistered
	case d.FirstConnectedAt != 0:
		d.State = StateConnected
	}
}

// ActivationEventID is the id of a thing's device.activated event: one per thing, forever.
func ActivationEventID(thing string) string {
	return events.DeterministicID(events.TypeDeviceActivated, thing)
}

// ActivatedEvent builds the device.activated event. Its content depends only on the stored device, so
// a re-send after a crash is byte-for-byte the same event.
func (d Device) ActivatedEvent(source string) (events.Envelope, error) {
	ms := func(v int64) time.Time { return time.UnixMilli(v).UTC() }
	return events.New(ActivationEventID(d.ThingName), source, ms(d.ActivatedAt), d.ThingName, &events.DeviceActivated{
		ThingName: d.ThingName, ThingID: d.ThingID, RegisteredAt: ms(d.RegisteredAt),
		FirstConnectedAt: ms(d.FirstConnectedAt), ActivatedAt: ms(d.ActivatedAt), Attributes: d.Attributes,
	})
}

// comparable is the device without its map, so two versions can be compared with ==.
type comparable struct {
	ThingName, ThingID                                                    string
	State                                                                 State
	RegistryVersion, RegisteredAt, FirstConnectedAt, LastConnectedAt, Act int64
	Activation                                                            claim.Notice
}

type deviceSnapshot struct {
	c     comparable
	attrs map[string]string
}

func (d *Device) snapshot() deviceSnapshot {
	return deviceSnapshot{c: comparable{d.ThingName, d.ThingID, d.State, d.RegistryVersion, d.RegisteredAt,
		d.FirstConnectedAt, d.LastConnectedAt, d.ActivatedAt, d.Activation}, attrs: maps.Clone(d.Attributes)}
}

func (d *Device) equal(s deviceSnapshot) bool {
	now := d.snapshot()
	return now.c == s.c && maps.Equal(now.attrs, s.attrs)
}
