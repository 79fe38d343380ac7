// Package binding is the user–device binding stage: it reads binding requests from SQS
// thingpipe-binding and binds a user to an ACTIVE device in DynamoDB thingpipe-bindings (key
// thingName, global secondary index on userId), publishing binding.completed or binding.rejected.
//
// Decisions:
//   - device not ACTIVE (or unknown): retried (ErrNotActiveYet) until ActivationDeadline after the
//     request was first sent (SQS SentTimestamp), then binding.rejected with device_not_active or
//     unknown_device;
//   - device bound to another user: binding.rejected already_bound (the other user is not disclosed);
//   - device already bound to the same user: success again, binding.completed with alreadyBound true
//     (so an app retrying with a new requestId gets an answer to it); the stored binding keeps its
//     first requestId and boundAt.
package binding

import (
	"time"

	"github.com/thingpipe/thingpipe/events"
)

// Binding is one item of thingpipe-bindings. BoundAt is epoch milliseconds.
type Binding struct {
	ThingName string `dynamodbav:"thingName"`
	UserID    string `dynamodbav:"userId"`
	RequestID string `dynamodbav:"requestId"`
	BoundAt   int64  `dynamodbav:"boundAt"`
}

// DeviceStatus is what the binding stage knows of a device (from thingpipe-devices).
type DeviceStatus struct {
	Found bool
	State string // REGISTERED, CONNECTED, ACTIVE
}

// Active reports whether the device can be bound.
func (d DeviceStatus) Active() bool { return d.Found && d.State == "ACTIVE" }

// Action is what to do with a request.
type Action int

const (
	// Bind the user to the device.
	Bind Action = iota
	// RetryLater: the device is not ACTIVE yet and the deadline has not passed.
	RetryLater
	// Reject the request with the decision's reason.
	Reject
)

// Decision is the outcome of Decide.
type Decision struct {
	Action Action
	Reason string    // for Reject
	Until  time.Time // for RetryLater: the deadline
}

// Decide is the stage's rule for a request about a device in state dev, first sent at sent.
func Decide(dev DeviceStatus, sent, now time.Time, deadline time.Duration) Decision {
	if dev.Active() {
		return Decision{Action: Bind}
	}
	if until := sent.Add(deadline); now.Before(until) {
		return Decision{Action: RetryLater, Until: until}
	}
	if !dev.Found {
		return Decision{Action: Reject, Reason: events.ReasonUnknownDevice}
	}
	return Decision{Action: Reject, Reason: events.ReasonDeviceNotActive}
}

// CompletedEvent is binding.completed for req given the stored binding b. Its id depends only on the
// request, so a redelivered request produces the same event id.
func CompletedEvent(source string, req events.BindingRequest, b Binding) (events.Envelope, error) {
	at := time.UnixMilli(b.BoundAt).UTC()
	return events.New(events.DeterministicID(events.TypeBindingCompleted, req.RequestID, req.ThingName, req.UserID), source, at, req.ThingName,
		&events.BindingCompleted{RequestID: req.RequestID, ThingName: req.ThingName, UserID: req.UserID, BoundAt: at, AlreadyBound: b.RequestID != req.RequestID})
}

// RejectedEvent is binding.rejected for req.
func RejectedEvent(source string, req events.BindingRequest, reason, detail string, now time.Time) (events.Envelope, error) {
	return events.New(events.DeterministicID(events.TypeBindingRejected, req.RequestID, req.ThingName, req.UserID), source, now, req.ThingName,
		&events.BindingRejected{RequestID: req.RequestID, ThingName: req.ThingName, UserID: req.UserID, Reason: reason, Detail: detail})
}
