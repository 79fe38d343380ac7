package simulator_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/thingpipe/thingpipe/broker"
	"github.com/thingpipe/thingpipe/simulator"
)

type collector struct {
	mu   sync.Mutex
	msgs []broker.Message
}

func (c *collector) HandleMessage(_ context.Context, m broker.Message) {
	c.mu.Lock()
	c.msgs = append(c.msgs, m)
	c.mu.Unlock()
}

func (c *collector) byPrefix(prefix string) []broker.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []broker.Message
	for _, m := range c.msgs {
		if strings.HasPrefix(m.Topic, prefix) {
			out = append(out, m)
		}
	}
	return out
}

// everyDeviceSent reports whether the sink has at least n telemetry messages from every device.
func everyDeviceSent(sink *collector, devices []simulator.Device, n int) bool {
	count := map[string]int{}
	for _, m := range sink.byPrefix("dt/") {
		count[m.ClientID]++
	}
	for _, d := range devices {
		if count[d.Name] < n {
			return false
		}
	}
	return true
}

// waitPrefix waits until the sink has at least n messages whose topic starts with prefix.
func waitPrefix(t *testing.T, sink *collector, prefix string, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(sink.byPrefix(prefix)) < n {
		if time.Now().After(deadline) {
			t.Fatalf("sink has %d messages on %s*, want %d", len(sink.byPrefix(prefix)), prefix, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startBroker starts the embedded broker; the returned close drains it into the sink.
func startBroker(t *testing.T, sink broker.Sink) (*broker.Broker, func()) {
	t.Helper()
	b, err := broker.New(broker.Config{Addr: "127.0.0.1:0", Sink: sink, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	closeFn := func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := b.Close(ctx); err != nil {
				t.Errorf("broker Close: %v", err)
			}
		})
	}
	t.Cleanup(closeFn)
	return b, closeFn
}

func TestFleetAgainstEmbeddedBroker(t *testing.T) {
	sink := &collector{}
	b, closeBroker := startBroker(t, sink)
	sim, err := simulator.New(simulator.Config{
		URL:                "mqtt://" + b.Addr(),
		Devices:            6,
		Rate:               60,               // 10 per device per second
		Duration:           30 * time.Second, // a safety net: the test stops the run itself
		Seed:               7,
		AnomalyChance:      0.3,
		LowBatteryFraction: 0.5,
		ConnectTimeout:     5 * time.Second,
		Logger:             quiet(),
	})
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now().UnixMilli()
	// Run until every device has published a few readings, however slow this machine is today.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- sim.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for !everyDeviceSent(sink, sim.Devices(), 3) {
		if time.Now().After(deadline) {
			t.Fatalf("devices did not all send 3 readings; stats %+v", sim.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	after := time.Now().UnixMilli()
	st := sim.Stats()
	// MQTT's DISCONNECT has no acknowledgement: let the broker see every client's before closing it, or
	// the close would disconnect them itself. 6 devices, the registry client, 1 app user.
	waitPrefix(t, sink, broker.PresenceDisconnectedPrefix, 8)
	closeBroker() // drains every queued message into the sink

	devices := sim.Devices()
	if st.Devices != 6 || st.Connected != 6 || st.Errors() != 0 {
		t.Fatalf("stats = %+v", st)
	}

	// Registry events: one per device, AWS-shaped, with the planned attributes.
	reg := sink.byPrefix("$aws/events/thing/")
	if int64(len(reg)) != st.Registry || len(reg) != len(devices) {
		t.Errorf("sink has %d registry events, stats %d, devices %d", len(reg), st.Registry, len(devices))
	}
	regByThing := map[string]broker.ThingEvent{}
	for _, m := range reg {
		var ev broker.ThingEvent
		if err := json.Unmarshal(m.Payload, &ev); err != nil {
			t.Fatalf("registry payload %s: %v", m.Payload, err)
		}
		if m.Topic != broker.ThingCreatedTopic(ev.ThingName) || ev.EventType != "THING_EVENT" || ev.Operation != "CREATED" ||
			ev.AccountID != "123456789012" || ev.ThingID != broker.ThingID(ev.ThingName) || m.ClientID != simulator.RegistryClientID {
			t.Errorf("registry event on %s from %s = %+v", m.Topic, m.ClientID, ev)
		}
		regByThing[ev.ThingName] = ev
	}

	connected := map[string]broker.Message{}
	for _, m := range sink.byPrefix(broker.PresenceConnectedPrefix) {
		connected[strings.TrimPrefix(m.Topic, broker.PresenceConnectedPrefix)] = m
	}
	disconnected := map[string]broker.PresenceEvent{}
	for _, m := range sink.byPrefix(broker.PresenceDisconnectedPrefix) {
		var ev broker.PresenceEvent
		if err := json.Unmarshal(m.Payload, &ev); err != nil {
			t.Fatal(err)
		}
		disconnected[ev.ClientID] = ev
	}

	telemetry := map[string][]simulator.Reading{}
	var anomalies, low int64
	tm := sink.byPrefix("dt/")
	for _, m := range tm {
		var r simulator.Reading
		dec := json.NewDecoder(strings.NewReader(string(m.Payload)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("telemetry %s: %v", m.Payload, err)
		}
		if m.Topic != "dt/"+m.ClientID+"/telemetry" || m.QoS != 1 {
			t.Errorf("telemetry on %s from %s qos %d", m.Topic, m.ClientID, m.QoS)
		}
		if r.TS < before || r.TS > after || r.Battery < 1 || r.Battery > 100 {
			t.Errorf("reading %+v out of range", r)
		}
		if r.Temperature > 80 {
			anomalies++
		}
		if r.Battery < 15 {
			low++
		}
		telemetry[m.ClientID] = append(telemetry[m.ClientID], r)
	}
	if int64(len(tm)) != st.Telemetry || anomalies != st.Anomalies || low != st.LowBattery {
		t.Errorf("sink telemetry %d (anomalies %d, low battery %d), stats %+v", len(tm), anomalies, low, st)
	}

	binds := sink.byPrefix("app/")
	bound := 0
	for _, d := range devices {
		if diff := cmp.Diff(d.Attributes, regByThing[d.Name].Attributes); diff != "" {
			t.Errorf("%s attributes (-planned +event):\n%s", d.Name, diff)
		}
		conn, ok := connected[d.Name]
		if !ok {
			t.Errorf("no presence connected event for %s", d.Name)
		}
		if ev, ok := disconnected[d.Name]; !ok || ev.DisconnectReason != broker.ReasonClientInitiated {
			t.Errorf("%s disconnected event = %+v (present %v), want a clean client disconnect", d.Name, ev, ok)
		}
		if len(telemetry[d.Name]) == 0 {
			t.Errorf("no telemetry from %s", d.Name)
		}
		if d.BindUser == "" {
			continue
		}
		bound++
		var found bool
		for _, m := range binds {
			var req map[string]string
			if err := json.Unmarshal(m.Payload, &req); err != nil {
				t.Fatal(err)
			}
			if req["thingName"] != d.Name {
				continue
			}
			found = true
			want := map[string]string{"requestId": d.BindRequestID, "thingName": d.Name}
			if m.Topic != "app/"+d.BindUser+"/bind" || m.ClientID != "app-"+d.BindUser || !cmp.Equal(req, want) {
				t.Errorf("bind request on %s from %s = %v, want %v from app-%s", m.Topic, m.ClientID, req, want, d.BindUser)
			}
			if m.Time.Before(conn.Time) {
				t.Errorf("bind for %s at %v, before the device connected at %v", d.Name, m.Time, conn.Time)
			}
		}
		if !found {
			t.Errorf("no bind request for %s", d.Name)
		}
	}
	if bound != 3 || int64(len(binds)) != st.Bind || st.Bind != 3 {
		t.Errorf("%d devices planned for binding, sink has %d bind requests, stats %d; want 3", bound, len(binds), st.Bind)
	}
	for _, u := range sim.Users() {
		if _, ok := connected["app-"+u]; !ok {
			t.Errorf("app user %s never connected", u)
		}
	}
}

func TestRunUntilCancelled(t *testing.T) {
	sink := &collector{}
	b, closeBroker := startBroker(t, sink)
	sim, err := simulator.New(simulator.Config{
		URL: b.Addr(), Devices: 3, Rate: 30, Seed: 1, SkipRegistry: true, NoBind: true, Logger: quiet(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- sim.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for sim.Stats().Telemetry < 6 {
		if time.Now().After(deadline) {
			t.Fatalf("no telemetry flowing: %+v", sim.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop after cancel")
	}
	st := sim.Stats()
	waitPrefix(t, sink, broker.PresenceDisconnectedPrefix, 3)
	closeBroker()
	if n := len(sink.byPrefix("dt/")); int64(n) != st.Telemetry {
		t.Errorf("sink telemetry %d, stats %d", n, st.Telemetry)
	}
	if n := len(sink.byPrefix("$aws/events/thing/")); n != 0 || st.Registry != 0 {
		t.Errorf("SkipRegistry: %d registry events in the sink, stats %d", n, st.Registry)
	}
	if n := len(sink.byPrefix(broker.PresenceDisconnectedPrefix)); n != 3 {
		t.Errorf("%d disconnected events, want 3 (every device disconnects on stop)", n)
	}
}

func TestDurationEndsRun(t *testing.T) {
	b, _ := startBroker(t, &collector{})
	sim, err := simulator.New(simulator.Config{URL: b.Addr(), Devices: 2, Rate: 20, Duration: 300 * time.Millisecond, NoBind: true, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Run(t.Context()); err != nil { // returns by itself: the test has no deadline of its own
		t.Fatalf("Run: %v", err)
	}
	if st := sim.Stats(); st.Elapsed < 300*time.Millisecond || st.Connected != 2 || st.Errors() != 0 {
		t.Errorf("stats %+v", st)
	}
	if err := sim.Run(t.Context()); err == nil {
		t.Error("a second Run was accepted")
	}
}

func TestUnreachableBroker(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	sim, err := simulator.New(simulator.Config{URL: addr, Devices: 2, Duration: time.Second, ConnectTimeout: 300 * time.Millisecond, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	err = sim.Run(t.Context())
	if err == nil || !strings.Contains(err.Error(), simulator.RegistryClientID) {
		t.Fatalf("Run = %v, want an error naming the registry client", err)
	}
	if sim.Stats().ConnectErrors == 0 {
		t.Error("no connect error counted")
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		cfg   simulator.Config
		field string
	}{
		{simulator.Config{}, ""},
		{simulator.Config{URL: "ws://127.0.0.1:1883"}, "URL"},
		{simulator.Config{URL: "mqtt://127.0.0.1"}, "URL"},
		{simulator.Config{Devices: -1}, "Devices"},
		{simulator.Config{Rate: -5}, "Rate"},
		{simulator.Config{Duration: -time.Second}, "Duration"},
		{simulator.Config{Prefix: "a/b"}, "Prefix"},
		{simulator.Config{BindFraction: 1.5}, "BindFraction"},
		{simulator.Config{Users: -1}, "Users"},
		{simulator.Config{QoS: 2}, "QoS"},
		{simulator.Config{AccountID: "x"}, "AccountID"},
		{simulator.Config{KeepAlive: time.Millisecond}, "KeepAlive"},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		var ce *simulator.ConfigError
		switch {
		case tt.field == "" && err != nil:
			t.Errorf("Validate(%+v) = %v", tt.cfg, err)
		case tt.field != "" && (!errors.As(err, &ce) || ce.Field != tt.field):
			t.Errorf("Validate(%+v) = %v, want error on %s", tt.cfg, err, tt.field)
		}
	}
}
