package broker

import (
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Topics on which AWS IoT Core publishes lifecycle and registry events, and which this broker emulates.
const (
	PresenceConnectedPrefix    = "$aws/events/presence/connected/"
	PresenceDisconnectedPrefix = "$aws/events/presence/disconnected/"
	ThingEventPrefix           = "$aws/events/thing/"
)

// PresenceConnectedTopic is the topic of clientID's connected lifecycle event.
func PresenceConnectedTopic(clientID string) string { return PresenceConnectedPrefix + clientID }

// PresenceDisconnectedTopic is the topic of clientID's disconnected lifecycle event.
func PresenceDisconnectedTopic(clientID string) string { return PresenceDisconnectedPrefix + clientID }

// ThingCreatedTopic is the topic of thingName's registry "created" event.
func ThingCreatedTopic(thingName string) string { return ThingEventPrefix + thingName + "/created" }

// Disconnect reasons, as AWS IoT Core names them in disconnected lifecycle events. Only the ones this
// broker can tell apart are listed.
const (
	ReasonClientInitiated = "CLIENT_INITIATED_DISCONNECT"
	ReasonClientError     = "CLIENT_ERROR"
	ReasonConnectionLost  = "CONNECTION_LOST"
	ReasonDuplicateID     = "DUPLICATE_CLIENTID"
	ReasonKeepAlive       = "MQTT_KEEP_ALIVE_TIMEOUT"
	ReasonServerInitiated = "SERVER_INITIATED_DISCONNECT"
)

// PresenceEvent is the payload AWS IoT Core publishes on $aws/events/presence/{connected,disconnected}/<clientId>.
// The connected and disconnected events of one connection share SessionIdentifier and VersionNumber.
type PresenceEvent struct {
	ClientID            string `json:"clientId"`
	Timestamp           int64  `json:"timestamp"` // ms since the epoch
	EventType           string `json:"eventType"` // "connected" or "disconnected"
	SessionIdentifier   string `json:"sessionIdentifier"`
	PrincipalIdentifier string `json:"principalIdentifier"`
	IPAddress           string `json:"ipAddress,omitempty"`
	VersionNumber       int64  `json:"versionNumber"`
	// Disconnected events only.
	ClientInitiatedDisconnect *bool  `json:"clientInitiatedDisconnect,omitempty"`
	DisconnectReason          string `json:"disconnectReason,omitempty"`
}

// ThingEvent is the payload the AWS IoT registry publishes on $aws/events/thing/<thingName>/<operation>.
type ThingEvent struct {
	EventType     string            `json:"eventType"` // always "THING_EVENT"
	EventID       string            `json:"eventId"`
	Timestamp     int64             `json:"timestamp"` // ms since the epoch
	Operation     string            `json:"operation"` // CREATED, UPDATED or DELETED
	AccountID     string            `json:"accountId"`
	ThingID       string            `json:"thingId"`
	ThingName     string            `json:"thingName"`
	VersionNumber int64             `json:"versionNumber"`
	ThingTypeName *string           `json:"thingTypeName"` // null when the thing has no type, as AWS sends it
	Attributes    map[string]string `json:"attributes"`
}

// thingIDNamespace makes thing ids deterministic: the same thing name always gets the same thingId, so
// a replayed registry event is recognisably the same thing.
var thingIDNamespace = uuid.MustParse("5b0e2c43-8f0e-4c55-9a39-7c0f3f7c6a11")

// ThingID is the thingId this broker (and the simulator) give thingName: a name-based UUID.
func ThingID(thingName string) string {
	return uuid.NewSHA1(thingIDNamespace, []byte(thingName)).String()
}

// NewThingCreatedEvent builds the registry event AWS IoT publishes when thingName is created.
// eventID should be unique per event; a nil map becomes an empty attributes object.
func NewThingCreatedEvent(accountID, thingName, eventID string, attributes map[string]string, at time.Time) ThingEvent {
	if attributes == nil {
		attributes = map[string]string{}
	}
	return ThingEvent{
		EventType:     "THING_EVENT",
		EventID:       eventID,
		Timestamp:     at.UnixMilli(),
		Operation:     "CREATED",
		AccountID:     accountID,
		ThingID:       ThingID(thingName),
		ThingName:     thingName,
		VersionNumber: 1,
		Attributes:    attributes,
	}
}

// NameError says why a thing name or client id cannot be used in a topic.
type NameError struct {
	Field string
	Name  string
}

func (e *NameError) Error() string {
	return fmt.Sprintf("%s %q is not valid: it must be non-empty and contain no '/', '+' or '#'", e.Field, e.Name)
}

// validTopicLevel reports whether s can stand as one topic level (a thing name, a client id).
func validTopicLevel(s string) bool {
	return s != "" && !strings.ContainsAny(s, "/+#")
}
