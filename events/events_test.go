package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func readCorpus(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(corpusDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeRegistryEvent(t *testing.T) {
	in, err := DecodeProvisioning(readCorpus(t, "registry-ok.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := &RegistryEvent{
		EventID: "f5ae9b94-8b8e-4d8e-8c8f-b3266dd89853", Timestamp: time.UnixMilli(1795441762000).UTC(),
		Operation: OperationCreated, AccountID: "123456789012", ThingID: "b604f69c-aa9a-4d4a-829e-c480e958a0b5",
		ThingName: "dev-42", VersionNumber: 1, Attributes: map[string]string{"mac": "00:11:22:33:44:55", "region": "eu"},
	}
	if diff := cmp.Diff(want, in.Registry); diff != "" {
		t.Errorf("registry event (-want +got):\n%s", diff)
	}
	if in.Presence != nil || in.ThingName() != "dev-42" {
		t.Errorf("got presence %v, thing %q", in.Presence, in.ThingName())
	}
}

func TestDecodePresenceEvent(t *testing.T) {
	in, err := DecodeProvisioning(readCorpus(t, "presence-disconnected.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := &PresenceEvent{
		ClientID: "dev-42", Timestamp: time.UnixMilli(1795441763000).UTC(), EventType: PresenceDisconnected,
		SessionIdentifier: "00000000-0000-0000-0000-000000000000", PrincipalIdentifier: "12345678901234567890123456789012",
		IPAddress: "192.0.2.0", ClientInitiatedDisconnect: true, DisconnectReason: "CLIENT_INITIATED_DISCONNECT",
	}
	if diff := cmp.Diff(want, in.Presence); diff != "" {
		t.Errorf("presence event (-want +got):\n%s", diff)
	}
}

func TestBindingTopicWins(t *testing.T) {
	tests := []struct {
		name, payload string
		user          string
		ignored       bool
	}{
		{"rule added userId", `{"requestId":"r1","thingName":"dev-42","userId":"alice"}`, "alice", false},
		{"topic names another user than payload", string(readCorpus(t, "binding-other-user.json")), "alice", true},
		{"topic and same userId", `{"requestId":"r1","thingName":"dev-42","userId":"alice","topic":"app/alice/bind"}`, "alice", false},
		{"topic only", `{"requestId":"r1","thingName":"dev-42","topic":"app/bob/bind"}`, "bob", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := DecodeBindingRequest([]byte(tt.payload))
			if err != nil {
				t.Fatal(err)
			}
			if r.UserID != tt.user || r.PayloadUserIgnored != tt.ignored {
				t.Errorf("user %q ignored %v, want %q %v", r.UserID, r.PayloadUserIgnored, tt.user, tt.ignored)
			}
		})
	}
}

func TestValidateThingName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"dev-42", true}, {"a", true}, {"Thing_1:zone-2", true}, {strings.Repeat("x", 128), true},
		{"", false}, {strings.Repeat("x", 129), false}, {"dev/42", false}, {"dev+", false}, {"#", false},
		{"dev 42", false}, {"dev\x00", false}, {"dév", false}, {"dev.42", false}, {"$aws", false},
	}
	for _, tt := range tests {
		err := ValidateThingName(tt.name)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateThingName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func TestTelemetryNumber(t *testing.T) {
	tel, err := DecodeTelemetry("dev-42", []byte(`{"temperature":93.1,"env":{"hum":40},"battery":"NaN","flag":true,"gone":null,"ts":1795441762000}`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path  string
		v     float64
		found bool
		kind  error
	}{
		{"temperature", 93.1, true, nil},
		{"env.hum", 40, true, nil},
		{"missing", 0, false, nil},
		{"gone", 0, false, nil},
		{"env.missing", 0, false, nil},
		{"battery", 0, false, ErrWrongType},
		{"flag", 0, false, ErrWrongType},
		{"temperature.x", 0, false, ErrWrongType},
	}
	for _, tt := range tests {
		v, found, err := tel.Number(tt.path)
		if v != tt.v || found != tt.found || !errors.Is(err, tt.kind) || (tt.kind == nil) != (err == nil) {
			t.Errorf("Number(%q) = %v, %v, %v; want %v, %v, %v", tt.path, v, found, err, tt.v, tt.found, tt.kind)
		}
		var de *DecodeError
		if err != nil && (!errors.As(err, &de) || de.Field == "") {
			t.Errorf("Number(%q) error %v does not name the field", tt.path, err)
		}
	}
	if ts, ok := tel.DeviceTime(); !ok || !ts.Equal(time.UnixMilli(1795441762000)) {
		t.Errorf("DeviceTime = %v %v", ts, ok)
	}
	if _, err := DecodeTelemetry("dev/42", []byte(`{}`)); !errors.Is(err, ErrBadThingName) {
		t.Errorf("bad partition key: %v", err)
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 23, 14, 2, 11, 500_000_000, time.UTC)
	datas := []Data{
		&DeviceActivated{ThingName: "dev-42", RegisteredAt: at, FirstConnectedAt: at, ActivatedAt: at, Attributes: map[string]string{"mac": "x"}},
		&BindingCompleted{RequestID: "r1", ThingName: "dev-42", UserID: "alice", BoundAt: at},
		&BindingRejected{RequestID: "r1", ThingName: "dev-42", UserID: "bob", Reason: ReasonAlreadyBound},
		&AlertFiring{IncidentID: "i", Policy: "overheating", Severity: "critical", Metric: "temperature", Comparison: "above", Threshold: 80, Value: 93.1, Since: at, FiredAt: at, Consecutive: 3},
		&AlertResolved{IncidentID: "i", Policy: "overheating", Severity: "critical", Metric: "temperature", Comparison: "above", ClearThreshold: 75, Value: 70, PeakValue: 95, FiredAt: at, ResolvedAt: at},
	}
	for _, d := range datas {
		env, err := New(DeterministicID("x", d.EventType()), "thingpipe/test", at, "dev-42", d)
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(env)
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecodeEnvelope(b)
		if err != nil {
			t.Fatalf("%s: %v\n%s", d.EventType(), err, b)
		}
		if back.Type != d.EventType() || back.ID != env.ID || !back.Time.Equal(at) || back.Version != DataVersion {
			t.Errorf("%s: round trip changed the envelope: %+v", d.EventType(), back)
		}
		got, err := back.DecodeData()
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(d, got); diff != "" {
			t.Errorf("%s data (-want +got):\n%s", d.EventType(), diff)
		}
	}
	if _, err := New("id", "src", at, "bad/name", &BindingRejected{}); err == nil {
		t.Error("New accepted a bad thing name")
	}
}

func TestDeterministicID(t *testing.T) {
	a, b := DeterministicID("device.activated", "dev-1"), DeterministicID("device.activated", "dev-1")
	if a != b {
		t.Errorf("not deterministic: %s %s", a, b)
	}
	if a == DeterministicID("device.activated", "dev-2") || DeterministicID("ab", "c") == DeterministicID("a", "bc") {
		t.Error("different parts gave the same id")
	}
}

func TestIsPermanent(t *testing.T) {
	_, decErr := DecodeBindingRequest([]byte(`{}`))
	tests := []struct {
		err  error
		want bool
	}{
		{decErr, true},
		{fmt.Errorf("handling: %w", decErr), true},
		{Permanent("already_bound", errors.New("x")), true},
		{fmt.Errorf("wrapped: %w", Permanent("r", nil)), true},
		{errors.New("dynamodb: throttled"), false},
		{nil, false},
	}
	for _, tt := range tests {
		if got := IsPermanent(tt.err); got != tt.want {
			t.Errorf("IsPermanent(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
	if r := Reason(Permanent("unknown_device", nil)); r != "unknown_device" {
		t.Errorf("Reason = %q", r)
	}
	if r := Reason(decErr); !strings.Contains(r, "requestId") {
		t.Errorf("Reason of decode error %q does not name the field", r)
	}
}
