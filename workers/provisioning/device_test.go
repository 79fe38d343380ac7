package provisioning

import (
	"github.com/ThreeDotsLabs/watermill/message"
	"testing"
	"time"

	"github.com/thingpipe/thingpipe/events"
)

func created(thing string, ms int64, version int64, attrs map[string]string) events.ProvisioningInput {
	return events.ProvisioningInput{Registry: &events.RegistryEvent{Operation: events.OperationCreated, ThingName: thing,
		Timestamp: time.UnixMilli(ms), VersionNumber: version, Attributes: attrs}}
}

func presence(thing, kind string, ms int64) events.ProvisioningInput {
	return events.ProvisioningInput{Presence: &events.PresenceEvent{ClientID: thing, EventType: kind, Timestamp: time.UnixMilli(ms)}}
}

func TestDeviceApply(t *testing.T) {
	const th = "dev-1"
	conn := func(ms int64) events.ProvisioningInput { return presence(th, events.PresenceConnected, ms) }
	reg := func(ms int64) events.ProvisioningInput { return created(th, ms, 1, map[string]string{"mac": "m"}) }
	tests := []struct {
		name        string
		inputs      []events.ProvisioningInput
		wantChanged []bool
		state       State
		registered  int64
		first, last int64
		activated   int64
	}{
		{"created only", []events.ProvisioningInput{reg(100)}, []bool{true}, StateRegistered, 100, 0, 0, 0},
		{"connected only", []events.ProvisioningInput{conn(100)}, []bool{true}, StateConnected, 0, 100, 100, 0},
		{"created then connected", []events.ProvisioningInput{reg(100), conn(200)}, []bool{true, true}, StateActive, 100, 200, 200, 200},
		{"connected then created", []events.ProvisioningInput{conn(100), reg(200)}, []bool{true, true}, StateActive, 200, 100, 100, 200},
		{"replays change nothing", []events.ProvisioningInput{reg(100), reg(100), conn(200), conn(200), reg(100)},
			[]bool{true, false, true, false, false}, StateActive, 100, 200, 200, 200},
		{"connects out of date order", []events.ProvisioningInput{conn(300), conn(100), conn(200)},
			[]bool{true, true, false}, StateConnected, 0, 100, 300, 0},
		{"earlier registry event arrives later", []events.ProvisioningInput{reg(300), reg(100)}, []bool{true, true}, StateRegistered, 100, 0, 0, 0},
		{"disconnect is ignored", []events.ProvisioningInput{reg(100), presence(th, events.PresenceDisconnected, 150)},
			[]bool{true, false}, StateRegistered, 100, 0, 0, 0},
		{"activation time is fixed once active", []events.ProvisioningInput{reg(100), conn(200), conn(50), conn(400)},
			[]bool{true, true, true, true}, StateActive, 100, 50, 400, 200},
		{"deleted is ignored", []events.ProvisioningInput{{Registry: &events.RegistryEvent{Operation: events.OperationDeleted, ThingName: th, Timestamp: time.UnixMilli(5)}}},
			[]bool{false}, "", 0, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d Device
			for i, in := range tt.inputs {
				if got := d.Apply(in); got != tt.wantChanged[i] {
					t.Errorf("input %d: changed = %v, want %v", i, got, tt.wantChanged[i])
				}
			}
			if d.State != tt.state || d.RegisteredAt != tt.registered || d.FirstConnectedAt != tt.first ||
				d.LastConnectedAt != tt.last || d.ActivatedAt != tt.activated {
				t.Errorf("got %+v", d)
			}
			if (d.State == StateActive) != d.Activation.Pending() {
				t.Errorf("activation owed = %v in state %s", d.Activation.Pending(), d.State)
			}
		})
	}
}

func TestActivationOwedOnce(t *testing.T) {
	var d Device
	d.Apply(created("dev-1", 100, 1, nil))
	d.Apply(presence("dev-1", events.PresenceConnected, 200))
	if !d.Activation.Pending() || d.Activation.ID != ActivationEventID("dev-1") {
		t.Fatalf("activation not owed: %+v", d.Activation)
	}
	d.Activation.MarkNotified()
	for _, in := range []events.ProvisioningInput{created("dev-1", 100, 1, nil), presence("dev-1", events.PresenceConnected, 900)} {
		d.Apply(in)
		if d.Activation.Pending() || d.State != StateActive {
			t.Fatalf("replay re-owed the activation or regressed: %+v", d)
		}
	}
}

func TestRegistryAttributesFollowVersion(t *testing.T) {
	var d Device
	d.Apply(created("dev-1", 100, 2, map[string]string{"mac": "new"}))
	if d.Apply(created("dev-1", 50, 1, map[string]string{"mac": "old"})); d.Attributes["mac"] != "new" {
		t.Errorf("older registry version overwrote attributes: %v", d.Attributes)
	}
	upd := created("dev-1", 300, 3, map[string]string{"mac": "newer"})
	upd.Registry.Operation = events.OperationUpdated
	if !d.Apply(upd) || d.Attributes["mac"] != "newer" || d.RegisteredAt != 50 {
		t.Errorf("update not applied: %+v", d)
	}
}

func TestActivatedEventIsDeterministic(t *testing.T) {
	var d Device
	d.Apply(created("dev-1", 100, 1, map[string]string{"mac": "m"}))
	d.Apply(presence("dev-1", events.PresenceConnected, 200))
	a, err := d.ActivatedEvent("src")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := d.ActivatedEvent("src")
	if a.ID != b.ID || string(a.Data) != string(b.Data) || !a.Time.Equal(time.UnixMilli(200)) {
		t.Errorf("events differ: %+v %+v", a, b)
	}
}

// Handle is a watermill handler.
var _ message.NoPublishHandlerFunc = (*Stage)(nil).Handle
