package binding

import (
	"github.com/ThreeDotsLabs/watermill/message"
	"testing"
	"time"

	"github.com/thingpipe/thingpipe/events"
)

func TestDecide(t *testing.T) {
	sent := time.Date(2026, 11, 23, 14, 0, 0, 0, time.UTC)
	const deadline = time.Minute
	tests := []struct {
		name   string
		dev    DeviceStatus
		now    time.Time
		action Action
		reason string
	}{
		{"active binds", DeviceStatus{Found: true, State: "ACTIVE"}, sent, Bind, ""},
		{"active binds after the deadline too", DeviceStatus{Found: true, State: "ACTIVE"}, sent.Add(time.Hour), Bind, ""},
		{"registered waits", DeviceStatus{Found: true, State: "REGISTERED"}, sent.Add(30 * time.Second), RetryLater, ""},
		{"unknown waits", DeviceStatus{}, sent.Add(59 * time.Second), RetryLater, ""},
		{"registered rejected at the deadline", DeviceStatus{Found: true, State: "REGISTERED"}, sent.Add(deadline), Reject, events.ReasonDeviceNotActive},
		{"connected rejected after the deadline", DeviceStatus{Found: true, State: "CONNECTED"}, sent.Add(2 * deadline), Reject, events.ReasonDeviceNotActive},
		{"unknown rejected after the deadline", DeviceStatus{}, sent.Add(2 * deadline), Reject, events.ReasonUnknownDevice},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(tt.dev, sent, tt.now, deadline)
			if d.Action != tt.action || d.Reason != tt.reason {
				t.Errorf("Decide = %+v, want action %v reason %q", d, tt.action, tt.reason)
			}
			if d.Action == RetryLater && !d.Until.Equal(sent.Add(deadline)) {
				t.Errorf("until %v", d.Until)
			}
		})
	}
}

func TestCompletedEventMarksRepeats(t *testing.T) {
	req := events.BindingRequest{RequestID: "r2", ThingName: "dev-1", UserID: "alice"}
	first := Binding{ThingName: "dev-1", UserID: "alice", RequestID: "r1", BoundAt: 1000}
	env, err := CompletedEvent("src", req, first)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := env.DecodeData()
	if c := d.(*events.BindingCompleted); !c.AlreadyBound || !c.BoundAt.Equal(time.UnixMilli(1000)) {
		t.Errorf("repeat by the same user: %+v", c)
	}
	again, _ := CompletedEvent("src", req, first)
	if again.ID != env.ID {
		t.Error("same request gave different event ids")
	}
	own, _ := CompletedEvent("src", events.BindingRequest{RequestID: "r1", ThingName: "dev-1", UserID: "alice"}, first)
	d, _ = own.DecodeData()
	if d.(*events.BindingCompleted).AlreadyBound || own.ID == env.ID {
		t.Errorf("the creating request: %+v", d)
	}
}

// Handle is a watermill handler.
var _ message.NoPublishHandlerFunc = (*Stage)(nil).Handle
