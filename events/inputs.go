package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Registry event operations (AWS IoT registry events, topic $aws/events/thing/<thing>/<operation>).
const (
	OperationCreated = "CREATED"
	OperationUpdated = "UPDATED"
	OperationDeleted = "DELETED"
)

// RegistryEvent is an AWS IoT registry "thing" event, as AWS publishes it, e.g.
//
//	{"eventType":"THING_EVENT","eventId":"…","timestamp":1234567890123,"operation":"CREATED",
//	 "accountId":"123456789012","thingId":"…","thingName":"dev-42","versionNumber":1,
//	 "thingTypeName":null,"attributes":{"mac":"…","region":"eu"}}
type RegistryEvent struct {
	EventID       string
	Timestamp     time.Time
	Operation     string // CREATED, UPDATED or DELETED
	AccountID     string
	ThingID       string
	ThingName     string
	ThingTypeName string
	VersionNumber int64
	Attributes    map[string]string
}

// Presence event types.
const (
	PresenceConnected    = "connected"
	PresenceDisconnected = "disconnected"
)

// PresenceEvent is an AWS IoT lifecycle event ($aws/events/presence/<eventType>/<clientId>), e.g.
//
//	{"clientId":"dev-42","timestamp":1573002230757,"eventType":"connected",
//	 "sessionIdentifier":"…","principalIdentifier":"…","ipAddress":"192.0.2.0","versionNumber":0}
//
// thingpipe requires devices to connect with their thing name as MQTT client id (the AWS IoT
// convention the default IoT policy enforces), so ClientID is validated as a thing name.
type PresenceEvent struct {
	ClientID                  string
	Timestamp                 time.Time
	EventType                 string // connected or disconnected
	SessionIdentifier         string
	PrincipalIdentifier       string
	IPAddress                 string
	VersionNumber             int64
	ClientInitiatedDisconnect bool
	DisconnectReason          string
}

// ProvisioningInput is one message of the provisioning queue: exactly one of Registry and Presence is
// set.
type ProvisioningInput struct {
	Registry *RegistryEvent
	Presence *PresenceEvent
}

// ThingName returns the thing the input is about.
func (p ProvisioningInput) ThingName() string {
	if p.Registry != nil {
		return p.Registry.ThingName
	}
	if p.Presence != nil {
		return p.Presence.ClientID
	}
	return ""
}

// DecodeProvisioning decodes a message of the provisioning queue, telling registry events
// (eventType THING_EVENT) from presence events (eventType connected/disconnected).
func DecodeProvisioning(b []byte) (ProvisioningInput, error) {
	o, err := parseObject("provisioning event", b)
	if err != nil {
		return ProvisioningInput{}, err
	}
	et, err := o.str("eventType", true)
	if err != nil {
		return ProvisioningInput{}, err
	}
	switch et {
	case "THING_EVENT":
		o.input = "registry event"
		r, err := registryFrom(o)
		return ProvisioningInput{Registry: r}, err
	case PresenceConnected, PresenceDisconnected:
		o.input = "presence event"
		p, err := presenceFrom(o)
		return ProvisioningInput{Presence: p}, err
	default:
		return ProvisioningInput{}, o.errf("eventType", ErrUnknownType, "%q: want THING_EVENT, connected or disconnected", truncate(et, 40))
	}
}

// DecodeRegistryEvent decodes an AWS IoT registry thing event.
func DecodeRegistryEvent(b []byte) (*RegistryEvent, error) {
	o, err := parseObject("registry event", b)
	if err != nil {
		return nil, err
	}
	return registryFrom(o)
}

func registryFrom(o object) (*RegistryEvent, error) {
	var r RegistryEvent
	et, err := o.str("eventType", true)
	if err != nil {
		return nil, err
	}
	if et != "THING_EVENT" {
		return nil, o.errf("eventType", ErrInvalidValue, "%q: want THING_EVENT", truncate(et, 40))
	}
	if r.Operation, err = o.str("operation", true); err != nil {
		return nil, err
	}
	switch r.Operation {
	case OperationCreated, OperationUpdated, OperationDeleted:
	default:
		return nil, o.errf("operation", ErrInvalidValue, "%q: want CREATED, UPDATED or DELETED", truncate(r.Operation, 40))
	}
	if r.ThingName, err = o.thingName("thingName"); err != nil {
		return nil, err
	}
	ms, _, err := o.epochMillis("timestamp", true)
	if err != nil {
		return nil, err
	}
	r.Timestamp = time.UnixMilli(ms).UTC()
	for _, f := range []struct {
		key string
		dst *string
	}{{"eventId", &r.EventID}, {"accountId", &r.AccountID}, {"thingId", &r.ThingID}, {"thingTypeName", &r.ThingTypeName}} {
		if *f.dst, err = o.str(f.key, false); err != nil {
			return nil, err
		}
	}
	if r.VersionNumber, err = o.int("versionNumber"); err != nil {
		return nil, err
	}
	if r.Attributes, err = o.stringMap("attributes"); err != nil {
		return nil, err
	}
	return &r, nil
}

// DecodePresenceEvent decodes an AWS IoT connected/disconnected lifecycle event.
func DecodePresenceEvent(b []byte) (*PresenceEvent, error) {
	o, err := parseObject("presence event", b)
	if err != nil {
		return nil, err
	}
	return presenceFrom(o)
}

func presenceFrom(o object) (*PresenceEvent, error) {
	var p PresenceEvent
	var err error
	if p.EventType, err = o.str("eventType", true); err != nil {
		return nil, err
	}
	if p.EventType != PresenceConnected && p.EventType != PresenceDisconnected {
		return nil, o.errf("eventType", ErrInvalidValue, "%q: want connected or disconnected", truncate(p.EventType, 40))
	}
	if p.ClientID, err = o.thingName("clientId"); err != nil {
		return nil, err
	}
	ms, _, err := o.epochMillis("timestamp", true)
	if err != nil {
		return nil, err
	}
	p.Timestamp = time.UnixMilli(ms).UTC()
	for _, f := range []struct {
		key string
		dst *string
	}{{"sessionIdentifier", &p.SessionIdentifier}, {"principalIdentifier", &p.PrincipalIdentifier}, {"ipAddress", &p.IPAddress}, {"disconnectReason", &p.DisconnectReason}} {
		if *f.dst, err = o.str(f.key, false); err != nil {
			return nil, err
		}
	}
	if p.VersionNumber, err = o.int("versionNumber"); err != nil {
		return nil, err
	}
	if p.ClientInitiatedDisconnect, err = o.boolean("clientInitiatedDisconnect"); err != nil {
		return nil, err
	}
	return &p, nil
}

// MaxIDLen bounds request and user ids.
const MaxIDLen = 128

// BindingRequest asks to bind a user to a device. The mobile app publishes
// {"requestId":"…","thingName":"…"} to app/<userId>/bind; the rule adds userId from the topic
// (SELECT requestId, thingName, topic(2) AS userId, topic() AS topic FROM 'app/+/bind').
//
// The topic's user always wins: when the message carries "topic" (app/<userId>/bind), UserID is taken
// from it whatever "userId" says, and PayloadUserIgnored records that a different userId was present.
// Without "topic", "userId" is required and trusted, because only the rule can have put it there
// (IoT policies stop an app publishing on another user's topic).
type BindingRequest struct {
	RequestID          string
	ThingName          string
	UserID             string
	Topic              string
	PayloadUserIgnored bool
}

// DecodeBindingRequest decodes and validates a binding request.
func DecodeBindingRequest(b []byte) (BindingRequest, error) {
	var r BindingRequest
	o, err := parseObject("binding request", b)
	if err != nil {
		return r, err
	}
	if r.RequestID, err = o.str("requestId", true); err != nil {
		return r, err
	}
	if err := checkID(o, "requestId", r.RequestID); err != nil {
		return r, err
	}
	if r.ThingName, err = o.thingName("thingName"); err != nil {
		return r, err
	}
	payloadUser, err := o.str("userId", false)
	if err != nil {
		return r, err
	}
	if r.Topic, err = o.str("topic", false); err != nil {
		return r, err
	}
	if r.Topic != "" {
		parts := strings.Split(r.Topic, "/")
		if len(parts) != 3 || parts[0] != "app" || parts[2] != "bind" || parts[1] == "" {
			return r, o.errf("topic", ErrInvalidValue, "%q: want app/<userId>/bind", truncate(r.Topic, 60))
		}
		r.UserID = parts[1]
		if err := checkID(o, "topic", r.UserID); err != nil {
			return r, err
		}
		r.PayloadUserIgnored = payloadUser != "" && payloadUser != r.UserID
		return r, nil
	}
	if payloadUser == "" {
		return r, &DecodeError{Input: o.input, Field: "userId", Kind: ErrMissingField, Detail: "the rule must add it from the topic"}
	}
	if err := checkID(o, "userId", payloadUser); err != nil {
		return r, err
	}
	r.UserID = payloadUser
	return r, nil
}

// checkID keeps ids printable and short: they end up in DynamoDB keys and emails.
func checkID(o object, key, v string) error {
	if len(v) > MaxIDLen {
		return o.errf(key, ErrInvalidValue, "%d bytes, limit %d", len(v), MaxIDLen)
	}
	for _, r := range v {
		if r == '/' || r == '+' || r == '#' || r == ' ' || isControl(r) {
			return o.errf(key, ErrInvalidValue, "contains %q", r)
		}
	}
	return nil
}

// Telemetry is one device reading: the JSON object the device published, with its thing name taken
// from the Kinesis partition key. Fields keeps the object's top-level values raw (numbers exactly as
// sent), so the archive stores what the device sent.
type Telemetry struct {
	ThingName string
	Fields    map[string]json.RawMessage
}

// DecodeTelemetry decodes a telemetry record published by thing.
func DecodeTelemetry(thing string, b []byte) (Telemetry, error) {
	if err := ValidateThingName(thing); err != nil {
		return Telemetry{}, &DecodeError{Input: "telemetry", Field: "partitionKey", Kind: ErrBadThingName, Detail: err.Error()}
	}
	o, err := parseObject("telemetry", b)
	if err != nil {
		return Telemetry{}, err
	}
	if _, _, err := o.epochMillis("ts", false); err != nil {
		return Telemetry{}, err
	}
	return Telemetry{ThingName: thing, Fields: o.fields}, nil
}

// DeviceTime returns the device's own "ts" (epoch milliseconds), if it sent one.
func (t Telemetry) DeviceTime() (time.Time, bool) {
	raw, ok := t.Fields["ts"]
	if !ok {
		return time.Time{}, false
	}
	ms, err := strconv.ParseInt(string(bytes.TrimSpace(raw)), 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.UnixMilli(ms).UTC(), true
}

// Number returns the numeric value at a dotted metric path ("temperature", "env.humidity").
// found is false when the path is absent or null; err is a *DecodeError naming the field when the
// value is there but not a number (e.g. the string "NaN").
func (t Telemetry) Number(path string) (v float64, found bool, err error) {
	fields := t.Fields
	parts := strings.Split(path, ".")
	for i, p := range parts {
		raw, ok := fields[p]
		if !ok || isNull(raw) {
			return 0, false, nil
		}
		if i < len(parts)-1 {
			if typeName(raw) != "object" {
				return 0, false, &DecodeError{Input: "telemetry", Field: strings.Join(parts[:i+1], "."), Kind: ErrWrongType, Detail: "want object, got " + typeName(raw)}
			}
			var next map[string]json.RawMessage
			if err := json.Unmarshal(raw, &next); err != nil {
				return 0, false, &DecodeError{Input: "telemetry", Field: strings.Join(parts[:i+1], "."), Kind: ErrWrongType, Detail: err.Error()}
			}
			fields = next
			continue
		}
		if typeName(raw) != "number" {
			shown := typeName(raw)
			if shown == "string" {
				shown += " " + truncate(string(raw), 24)
			}
			return 0, false, &DecodeError{Input: "telemetry", Field: path, Kind: ErrWrongType, Detail: "want number, got " + shown}
		}
		f, err := strconv.ParseFloat(string(bytes.TrimSpace(raw)), 64)
		if err != nil {
			return 0, false, &DecodeError{Input: "telemetry", Field: path, Kind: ErrNumberRange, Detail: fmt.Sprint(err)}
		}
		return f, true, nil
	}
	return 0, false, nil
}
