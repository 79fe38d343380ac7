// Package events holds thingpipe's event types: the inputs the stages consume (AWS IoT registry and
// presence events, binding requests, telemetry records) with strict decoders that return typed
// errors naming the bad field, and the outcome events the stages publish (device.activated,
// binding.completed, binding.rejected, alert.firing, alert.resolved) in a versioned envelope.
package events

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
)

// SpecVersion is the envelope format version; DataVersion the version of the data schemas. A
// consumer should accept any DataVersion it knows and ignore unknown fields.
const (
	SpecVersion = "1.0"
	DataVersion = 1
)

// Envelope wraps every outcome event thingpipe publishes (SNS thingpipe-events), e.g.
//
//	{"specversion":"1.0","version":1,"id":"…","type":"device.activated",
//	 "source":"thingpipe/provisioning","time":"2026-11-23T14:02:11.5Z","thingName":"dev-42",
//	 "data":{…}}
//
// id is deterministic for a given outcome, so a redelivered event carries the same id and consumers
// can drop duplicates by id.
type Envelope struct {
	SpecVersion string          `json:"specversion"`
	Version     int             `json:"version"`
	ID          string          `json:"id"`
	Type        string          `json:"type"`
	Source      string          `json:"source"`
	Time        time.Time       `json:"time"`
	ThingName   string          `json:"thingName"`
	Data        json.RawMessage `json:"data"`
}

// Data is the payload of one event type.
type Data interface {
	EventType() string
}

// New builds an envelope around d.
func New(id, source string, at time.Time, thingName string, d Data) (Envelope, error) {
	if id == "" || source == "" {
		return Envelope{}, fmt.Errorf("building %s event: id and source are required", d.EventType())
	}
	if err := ValidateThingName(thingName); err != nil {
		return Envelope{}, fmt.Errorf("building %s event: thing name: %w", d.EventType(), err)
	}
	raw, err := json.Marshal(d)
	if err != nil {
		return Envelope{}, fmt.Errorf("building %s event: %w", d.EventType(), err)
	}
	return Envelope{SpecVersion: SpecVersion, Version: DataVersion, ID: id, Type: d.EventType(), Source: source,
		Time: at.UTC(), ThingName: thingName, Data: raw}, nil
}

// idNamespace seeds DeterministicID; it is fixed forever (changing it changes every event id).
var idNamespace = uuid.MustParse("5b0f3f6c-7d1e-4f43-9a55-2f6f1f1e0d7a")

// DeterministicID derives a stable UUID (version 5) from parts, for event ids that stay the same
// when the same outcome is published again after a redelivery.
func DeterministicID(parts ...string) string {
	return uuid.NewSHA1(idNamespace, []byte(strings.Join(parts, "\x00"))).String()
}

// DecodeEnvelope decodes and validates an envelope (not its data; see DecodeData).
func DecodeEnvelope(b []byte) (Envelope, error) {
	o, err := parseObject("envelope", b)
	if err != nil {
		return Envelope{}, err
	}
	var e Envelope
	if e.SpecVersion, err = o.str("specversion", true); err != nil {
		return e, err
	}
	if e.SpecVersion != SpecVersion {
		return e, o.errf("specversion", ErrInvalidValue, "%q: want %q", truncate(e.SpecVersion, 20), SpecVersion)
	}
	v, err := o.int("version")
	if err != nil {
		return e, err
	}
	if v < 1 {
		return e, o.errf("version", ErrInvalidValue, "want a positive integer")
	}
	e.Version = int(v)
	for _, f := range []struct {
		key string
		dst *string
	}{{"id", &e.ID}, {"type", &e.Type}, {"source", &e.Source}} {
		if *f.dst, err = o.str(f.key, true); err != nil {
			return e, err
		}
	}
	if e.ThingName, err = o.thingName("thingName"); err != nil {
		return e, err
	}
	ts, err := o.str("time", true)
	if err != nil {
		return e, err
	}
	if e.Time, err = time.Parse(time.RFC3339Nano, ts); err != nil {
		return e, o.errf("time", ErrInvalidValue, "want RFC 3339: %v", err)
	}
	if typeName(o.fields["data"]) != "object" {
		return e, o.errf("data", ErrWrongType, "want object, got %s", typeName(o.fields["data"]))
	}
	e.Data = o.fields["data"]
	return e, nil
}

// DecodeData decodes the envelope's data into the type its Type names.
func (e Envelope) DecodeData() (Data, error) {
	var d Data
	switch e.Type {
	case TypeDeviceActivated:
		d = &DeviceActivated{}
	case TypeBindingCompleted:
		d = &BindingCompleted{}
	case TypeBindingRejected:
		d = &BindingRejected{}
	case TypeAlertFiring:
		d = &AlertFiring{}
	case TypeAlertResolved:
		d = &AlertResolved{}
	default:
		return nil, &DecodeError{Input: "envelope", Field: "type", Kind: ErrUnknownType, Detail: truncate(e.Type, 40)}
	}
	if err := json.Unmarshal(e.Data, d); err != nil {
		return nil, &DecodeError{Input: e.Type + " data", Kind: ErrWrongType, Detail: err.Error()}
	}
	return d, nil
}
