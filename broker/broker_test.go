package broker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/google/go-cmp/cmp"

	"github.com/thingpipe/thingpipe/broker"
)

const goldenThingID = "58e907a8-9463-53a3-a5f0-9cdc898cc080"

var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func TestConnectPublishesPresenceEvent(t *testing.T) {
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			sink := newRecorder()
			b := startBroker(t, broker.Config{Sink: sink})
			watcher := connectV5(t, b.Addr(), "watcher")
			got := watcher.subscribe(t, "$aws/events/presence/connected/+")

			before := time.Now().UnixMilli()
			p.connect(t, b.Addr(), "dev-1")

			msgs := got.wait(t, 1)
			if msgs[0].topic != "$aws/events/presence/connected/dev-1" {
				t.Fatalf("subscriber got topic %q", msgs[0].topic)
			}
			ev := decodePresence(t, msgs[0].payload)
			if ev.ClientID != "dev-1" || ev.EventType != "connected" || ev.PrincipalIdentifier != "dev-1" ||
				ev.IPAddress != "127.0.0.1" || ev.VersionNumber <= 0 || !uuidPattern.MatchString(ev.SessionIdentifier) {
				t.Errorf("connected event = %+v", ev)
			}
			if ev.Timestamp < before || ev.Timestamp > time.Now().UnixMilli() {
				t.Errorf("timestamp %d not within the test's run [%d, now]", ev.Timestamp, before)
			}
			if ev.ClientInitiatedDisconnect != nil || ev.DisconnectReason != "" {
				t.Errorf("connected event carries disconnect fields: %+v", ev)
			}

			// The sink gets the same event, as a message from the broker itself.
			sm := sink.waitTopic(t, "$aws/events/presence/connected/dev-1", 1)
			if string(sm[0].Payload) != string(msgs[0].payload) {
				t.Errorf("sink payload %s, subscriber payload %s", sm[0].Payload, msgs[0].payload)
			}
			if sm[0].ClientID != "" || sm[0].QoS != 1 || sm[0].Time.IsZero() {
				t.Errorf("sink message = %+v", sm[0])
			}
		})
	}
}

func TestPresencePayloadHasAWSFields(t *testing.T) {
	sink := newRecorder()
	b := startBroker(t, broker.Config{Sink: sink})
	c := connectV5(t, b.Addr(), "dev-shape")
	c.disconnect(t)
	conn := sink.waitTopic(t, "$aws/events/presence/connected/dev-shape", 1)[0]
	disc := sink.waitTopic(t, "$aws/events/presence/disconnected/dev-shape", 1)[0]

	keys := func(payload []byte) []string {
		var m map[string]any
		if err := json.Unmarshal(payload, &m); err != nil {
			t.Fatalf("payload %s: %v", payload, err)
		}
		var ks []string
		for _, k := range []string{"clientId", "timestamp", "eventType", "sessionIdentifier", "principalIdentifier",
			"ipAddress", "versionNumber", "clientInitiatedDisconnect", "disconnectReason"} {
			if _, ok := m[k]; ok {
				ks = append(ks, k)
			}
		}
		if len(ks) != len(m) {
			t.Errorf("payload has fields AWS does not send: %s", payload)
		}
		return ks
	}
	wantConn := []string{"clientId", "timestamp", "eventType", "sessionIdentifier", "principalIdentifier", "ipAddress", "versionNumber"}
	if diff := cmp.Diff(wantConn, keys(conn.Payload)); diff != "" {
		t.Errorf("connected event fields (-want +got):\n%s", diff)
	}
	wantDisc := append(wantConn, "clientInitiatedDisconnect", "disconnectReason")
	if diff := cmp.Diff(wantDisc, keys(disc.Payload)); diff != "" {
		t.Errorf("disconnected event fields (-want +got):\n%s", diff)
	}
}

func TestDisconnectEvent(t *testing.T) {
	tests := []struct {
		name            string
		clientID        string
		end             func(t *testing.T, addr string, c *v5client)
		reason          string
		clientInitiated bool
	}{
		{
			name:     "DISCONNECT packet",
			clientID: "dev-bye",
			end: func(t *testing.T, _ string, c *v5client) {
				c.disconnect(t)
			},
			reason: broker.ReasonClientInitiated, clientInitiated: true,
		},
		{
			name:     "connection dropped",
			clientID: "dev-lost",
			end: func(t *testing.T, _ string, c *v5client) {
				c.c.TerminateConnectionForTest()
			},
			reason: broker.ReasonConnectionLost,
		},
		{
			name:     "same client id connects again",
			clientID: "dev-dup",
			end: func(t *testing.T, addr string, _ *v5client) {
				connectV5(t, addr, "dev-dup")
			},
			reason: broker.ReasonDuplicateID,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sink := newRecorder()
			b := startBroker(t, broker.Config{Sink: sink})
			watcher := connectV5(t, b.Addr(), "watcher")
			got := watcher.subscribe(t, "$aws/events/presence/disconnected/"+tt.clientID)
			c := connectV5(t, b.Addr(), tt.clientID)
			connected := decodePresence(t, sink.waitTopic(t, broker.PresenceConnectedTopic(tt.clientID), 1)[0].Payload)

			tt.end(t, b.Addr(), c)

			ev := decodePresence(t, got.wait(t, 1)[0].payload)
			if ev.EventType != "disconnected" || ev.ClientID != tt.clientID || ev.DisconnectReason != tt.reason ||
				ev.ClientInitiatedDisconnect == nil || *ev.ClientInitiatedDisconnect != tt.clientInitiated {
				t.Errorf("disconnected event = %+v, want reason %s, clientInitiated %v", ev, tt.reason, tt.clientInitiated)
			}
			// One connection's two events share session and version, as in AWS.
			if ev.SessionIdentifier != connected.SessionIdentifier || ev.VersionNumber != connected.VersionNumber {
				t.Errorf("disconnected session/version %s/%d, connected %s/%d",
					ev.SessionIdentifier, ev.VersionNumber, connected.SessionIdentifier, connected.VersionNumber)
			}
			if n := len(sink.waitTopic(t, broker.PresenceDisconnectedTopic(tt.clientID), 1)); n != 1 {
				t.Errorf("sink got %d disconnected events", n)
			}
		})
	}
}

func TestVersionNumberGrowsPerConnection(t *testing.T) {
	sink := newRecorder()
	b := startBroker(t, broker.Config{Sink: sink})
	var versions []int64
	for i := range 3 {
		c := connectV5(t, b.Addr(), "dev-again")
		ev := decodePresence(t, sink.waitTopic(t, broker.PresenceConnectedTopic("dev-again"), i+1)[i].Payload)
		versions = append(versions, ev.VersionNumber)
		c.disconnect(t)
		sink.waitTopic(t, broker.PresenceDisconnectedTopic("dev-again"), i+1)
	}
	if !(versions[0] < versions[1] && versions[1] < versions[2]) {
		t.Errorf("versionNumber of successive connections = %v, want increasing", versions)
	}
}

func TestServerCloseSendsServerInitiatedDisconnect(t *testing.T) {
	sink := newRecorder()
	b, err := broker.New(broker.Config{Addr: "127.0.0.1:0", Sink: sink, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	connectV5(t, b.Addr(), "dev-stay")
	sink.waitTopic(t, broker.PresenceConnectedTopic("dev-stay"), 1)
	if err := b.Close(t.Context()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// Close drained: the event is there without waiting.
	got := sink.withTopic(broker.PresenceDisconnectedTopic("dev-stay"))
	if len(got) != 1 {
		t.Fatalf("after Close the sink has %d disconnected events, want 1", len(got))
	}
	if ev := decodePresence(t, got[0].Payload); ev.DisconnectReason != broker.ReasonServerInitiated || *ev.ClientInitiatedDisconnect {
		t.Errorf("disconnected event = %+v", ev)
	}
	if err := b.Close(t.Context()); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestClientPublishReachesSink(t *testing.T) {
	for _, p := range protocols {
		for _, qos := range []byte{0, 1} {
			t.Run(fmt.Sprintf("%s/qos%d", p.name, qos), func(t *testing.T) {
				sink := newRecorder()
				b := startBroker(t, broker.Config{Sink: sink})
				sub := connectV5(t, b.Addr(), "listener").subscribe(t, "dt/+/telemetry")
				c := p.connect(t, b.Addr(), "x")
				payload := []byte(`{"temperature": 21.5, "battery": 87, "ts": 1795441762000}`)
				c.publish(t, "dt/x/telemetry", qos, payload)

				m := sink.waitTopic(t, "dt/x/telemetry", 1)[0]
				if string(m.Payload) != string(payload) || m.ClientID != "x" || m.QoS != qos || m.Principal != "x" {
					t.Errorf("sink message = %+v (payload %s)", m, m.Payload)
				}
				if r := sub.wait(t, 1)[0]; r.topic != "dt/x/telemetry" || string(r.payload) != string(payload) {
					t.Errorf("subscriber got %s %s", r.topic, r.payload)
				}
			})
		}
	}
}

func TestPrincipalIsUsernameWhenGiven(t *testing.T) {
	sink := newRecorder()
	b := startBroker(t, broker.Config{Sink: sink})
	c, _, err := dialV5(t, b.Addr(), "dev-u", "alice")
	if err != nil {
		t.Fatal(err)
	}
	defer c.disconnect(t)
	c.publish(t, "dt/dev-u/telemetry", 1, []byte(`{}`))
	if m := sink.waitTopic(t, "dt/dev-u/telemetry", 1)[0]; m.Principal != "alice" || m.ClientID != "dev-u" {
		t.Errorf("message = %+v", m)
	}
	ev := decodePresence(t, sink.waitTopic(t, broker.PresenceConnectedTopic("dev-u"), 1)[0].Payload)
	if ev.PrincipalIdentifier != "alice" {
		t.Errorf("principalIdentifier = %q", ev.PrincipalIdentifier)
	}
}

func TestClientPublishesRegistryEvent(t *testing.T) {
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			sink := newRecorder()
			b := startBroker(t, broker.Config{Sink: sink})
			sub := connectV5(t, b.Addr(), "provisioner").subscribe(t, "$aws/events/thing/+/created")
			ev := broker.NewThingCreatedEvent("123456789012", "sim-00a1", "e-1", map[string]string{"mac": "02:00:00:00:00:01"}, time.Now())
			payload, err := json.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			p.connect(t, b.Addr(), "registry").publish(t, "$aws/events/thing/sim-00a1/created", 1, payload)

			m := sink.waitTopic(t, "$aws/events/thing/sim-00a1/created", 1)[0]
			if string(m.Payload) != string(payload) || m.ClientID != "registry" {
				t.Errorf("sink message = %+v", m)
			}
			if r := sub.wait(t, 1)[0]; string(r.payload) != string(payload) {
				t.Errorf("subscriber got %s", r.payload)
			}
		})
	}
}

func TestPublishRegistryEvent(t *testing.T) {
	sink := newRecorder()
	b := startBroker(t, broker.Config{Sink: sink, AccountID: "111122223333"})
	sub := connectV5(t, b.Addr(), "provisioner").subscribe(t, "$aws/events/thing/+/created")
	before := time.Now().UnixMilli()
	attrs := map[string]string{"mac": "02:42:ac:11:00:02", "region": "eu-west-1"}
	if err := b.PublishRegistryEvent(t.Context(), "dev-42", attrs); err != nil {
		t.Fatalf("PublishRegistryEvent: %v", err)
	}
	r := sub.wait(t, 1)[0]
	if r.topic != "$aws/events/thing/dev-42/created" {
		t.Fatalf("topic %q", r.topic)
	}
	var got map[string]any
	if err := json.Unmarshal(r.payload, &got); err != nil {
		t.Fatal(err)
	}
	ts, _ := got["timestamp"].(float64)
	if int64(ts) < before || int64(ts) > time.Now().UnixMilli() {
		t.Errorf("timestamp %v outside the test's run", got["timestamp"])
	}
	if id, _ := got["eventId"].(string); !uuidPattern.MatchString(id) {
		t.Errorf("eventId %v is not a UUID", got["eventId"])
	}
	delete(got, "timestamp")
	delete(got, "eventId")
	want := map[string]any{
		"eventType":     "THING_EVENT",
		"operation":     "CREATED",
		"accountId":     "111122223333",
		"thingId":       broker.ThingID("dev-42"),
		"thingName":     "dev-42",
		"versionNumber": float64(1),
		"thingTypeName": nil,
		"attributes":    map[string]any{"mac": "02:42:ac:11:00:02", "region": "eu-west-1"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("registry event (-want +got):\n%s", diff)
	}
	if m := sink.waitTopic(t, "$aws/events/thing/dev-42/created", 1)[0]; string(m.Payload) != string(r.payload) {
		t.Errorf("sink payload %s", m.Payload)
	}
	// thingId is a name-based UUID: stable across runs and processes (golden value), distinct per name.
	if id := broker.ThingID("dev-42"); id != goldenThingID || id == broker.ThingID("dev-43") {
		t.Errorf("ThingID(dev-42) = %s, want %s", id, goldenThingID)
	}

	var ne *broker.NameError
	for _, bad := range []string{"", "a/b", "a+b", "a#"} {
		if err := b.PublishRegistryEvent(t.Context(), bad, nil); !errors.As(err, &ne) {
			t.Errorf("PublishRegistryEvent(%q) = %v, want a NameError", bad, err)
		}
	}
}

func TestBadClientIDRejected(t *testing.T) {
	sink := newRecorder()
	b := startBroker(t, broker.Config{Sink: sink})
	for _, id := range []string{"dev/1", "dev+1", "dev#"} {
		t.Run("mqtt5 "+id, func(t *testing.T) {
			_, ca, err := dialV5(t, b.Addr(), id, "")
			if err == nil {
				t.Fatalf("connect %q succeeded", id)
			}
			if ca == nil || ca.ReasonCode != 0x85 {
				t.Errorf("CONNACK = %+v (err %v), want reason 0x85 client identifier not valid", ca, err)
			}
		})
		t.Run("mqtt311 "+id, func(t *testing.T) {
			_, err := dialV3(t, b.Addr(), id)
			if err == nil || !regexp.MustCompile(`(?i)identifier rejected`).MatchString(err.Error()) {
				t.Errorf("connect %q: err = %v, want identifier rejected (return code 2)", id, err)
			}
		})
	}
	// A good client still gets in, and the rejected ones left no trace in the sink.
	connectV5(t, b.Addr(), "dev-ok")
	sink.waitTopic(t, broker.PresenceConnectedTopic("dev-ok"), 1)
	for _, m := range sink.all() {
		if m.Topic != broker.PresenceConnectedTopic("dev-ok") {
			t.Errorf("unexpected sink message %s", m.Topic)
		}
	}
}

func TestCloseDrainsSinkQueue(t *testing.T) {
	sink := newRecorder()
	sink.gate = make(chan struct{})
	b, err := broker.New(broker.Config{Addr: "127.0.0.1:0", Sink: sink, Logger: quietLogger(), Workers: 2, QueueSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	c := connectV5(t, b.Addr(), "dev-d")
	const n = 20
	for i := range n {
		c.publish(t, "dt/dev-d/telemetry", 1, fmt.Appendf(nil, `{"i":%d}`, i))
	}
	// Every publish was acknowledged, yet the sink has handled nothing: all sit in the queue.
	if got := len(sink.all()); got != 0 {
		t.Fatalf("sink handled %d messages while gated", got)
	}
	closed := make(chan error, 1)
	go func() { closed <- b.Close(context.Background()) }()
	close(sink.gate)
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	got := sink.withTopic("dt/dev-d/telemetry")
	if len(got) != n {
		t.Fatalf("after Close the sink has %d telemetry messages, want %d", len(got), n)
	}
	for i, m := range got { // one client's messages arrive in order
		if want := fmt.Sprintf(`{"i":%d}`, i); string(m.Payload) != want {
			t.Errorf("message %d = %s, want %s", i, m.Payload, want)
		}
	}
	if len(sink.withTopic(broker.PresenceDisconnectedTopic("dev-d"))) != 1 {
		t.Error("disconnected event missing after Close")
	}
	st := b.Stats()
	if st.Dropped != 0 || st.Enqueued != st.Delivered || st.Queued != 0 || st.Delivered != uint64(len(sink.all())) {
		t.Errorf("stats after drain = %+v, sink has %d", st, len(sink.all()))
	}
}

func TestCloseGivesUpWhenContextEnds(t *testing.T) {
	sink := newRecorder()
	sink.gate = make(chan struct{})
	b, err := broker.New(broker.Config{Addr: "127.0.0.1:0", Sink: sink, Logger: quietLogger(), Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := b.Republish(t.Context(), fmt.Sprintf("out/%d", i), nil, 0); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	done := make(chan error, 1)
	go func() { done <- b.Close(ctx) }()
	// Close has given up and cancelled the sink's context; release the one call under way.
	time.Sleep(10 * time.Millisecond)
	close(sink.gate)
	err = <-done
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Close = %v, want context.Canceled", err)
	}
	st := b.Stats()
	if st.Enqueued != 5 || st.Delivered+st.Dropped != 5 || st.Dropped == 0 {
		t.Errorf("stats = %+v: want 5 enqueued, each delivered or dropped, some dropped", st)
	}
}

func TestBlockPolicyStallsPublisherWithoutLoss(t *testing.T) {
	sink := newRecorder()
	sink.gate = make(chan struct{})
	b := startBroker(t, broker.Config{Sink: sink, Workers: 1, QueueSize: 2})
	c := connectV5(t, b.Addr(), "dev-fast")
	sink.gate <- struct{}{} // let the connected event through

	const n = 10
	acked := make(chan int, n)
	go func() {
		for i := range n {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			_, err := c.c.Publish(ctx, &paho.Publish{Topic: "dt/dev-fast/telemetry", QoS: 1, Payload: fmt.Appendf(nil, "%d", i)})
			cancel()
			if err != nil {
				t.Errorf("publish %d: %v", i, err)
				return
			}
			acked <- i
		}
	}()
	// With the sink stuck, at most one message is being handled and QueueSize wait: the rest of the
	// publishes are not acknowledged, and the broker reports a publisher waiting.
	deadline := time.Now().Add(waitFor)
	for b.Stats().Waited == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no publisher waited; stats %+v", b.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if len(acked) > 3 {
		t.Errorf("%d publishes acknowledged while the sink was stuck (queue holds 2)", len(acked))
	}
	close(sink.gate)
	got := sink.waitTopic(t, "dt/dev-fast/telemetry", n)
	for i, m := range got {
		if string(m.Payload) != fmt.Sprint(i) {
			t.Errorf("message %d = %s", i, m.Payload)
		}
	}
	if st := b.Stats(); st.Dropped != 0 {
		t.Errorf("dropped %d", st.Dropped)
	}
}

func TestDropPolicyCountsDrops(t *testing.T) {
	sink := newRecorder()
	sink.gate = make(chan struct{})
	b := startBroker(t, broker.Config{Sink: sink, Workers: 1, QueueSize: 1, Backpressure: broker.Drop})
	var errs int
	for i := range 5 {
		if err := b.Republish(t.Context(), "out", fmt.Appendf(nil, "%d", i), 0); errors.Is(err, broker.ErrQueueFull) {
			errs++
		}
	}
	close(sink.gate)
	st := b.Stats()
	if errs == 0 || st.Dropped != uint64(errs) || st.Enqueued+st.Dropped != 5 {
		t.Errorf("%d ErrQueueFull, stats %+v", errs, st)
	}
}

func TestRepublishFromSinkNeverDeadlocks(t *testing.T) {
	var b *broker.Broker
	var mu sync.Mutex
	var republishErrs []error
	sink := newRecorder()
	sink.also = func(ctx context.Context, m broker.Message) {
		if len(m.Topic) > 3 && m.Topic[:3] == "in/" {
			if err := b.Republish(ctx, "out/"+m.Topic[3:], m.Payload, 1); err != nil {
				mu.Lock()
				republishErrs = append(republishErrs, err)
				mu.Unlock()
			}
		}
	}
	// One worker with room for one message: a republish that waited for room would wait forever.
	b = startBroker(t, broker.Config{Sink: sink, Workers: 1, QueueSize: 1})
	sub := connectV5(t, b.Addr(), "app").subscribe(t, "out/+")
	c := connectV5(t, b.Addr(), "dev-r")
	const n = 30
	for i := range n {
		c.publish(t, fmt.Sprintf("in/%d", i), 1, fmt.Appendf(nil, "%d", i))
	}
	sub.wait(t, n)
	for i := range n {
		sink.waitTopic(t, fmt.Sprintf("out/%d", i), 1)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(republishErrs) > 0 {
		t.Errorf("Republish errors: %v", republishErrs)
	}
}

func TestRepublishValidates(t *testing.T) {
	b := startBroker(t, broker.Config{})
	var pe *broker.PublishError
	tests := []struct {
		topic string
		qos   byte
		field string
	}{
		{"", 0, "topic"},
		{"a/+/b", 0, "topic"},
		{"a/#", 1, "topic"},
		{"a/b", 2, "qos"},
	}
	for _, tt := range tests {
		err := b.Republish(t.Context(), tt.topic, nil, tt.qos)
		if !errors.As(err, &pe) || pe.Field != tt.field {
			t.Errorf("Republish(%q, qos %d) = %v, want PublishError on %s", tt.topic, tt.qos, err, tt.field)
		}
	}
}

func TestConnackAdvertisesMaxQoS1(t *testing.T) {
	b := startBroker(t, broker.Config{})
	_, ca, err := dialV5(t, b.Addr(), "dev-q2", "")
	if err != nil {
		t.Fatal(err)
	}
	if ca.Properties == nil || ca.Properties.MaximumQoS == nil || *ca.Properties.MaximumQoS != 1 {
		t.Errorf("CONNACK maximum QoS = %+v, want 1 like AWS IoT Core", ca.Properties)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		cfg   broker.Config
		field string
	}{
		{broker.Config{}, ""},
		{broker.Config{Addr: "localhost"}, "Addr"},
		{broker.Config{AccountID: "12345"}, "AccountID"},
		{broker.Config{QueueSize: -1}, "QueueSize"},
		{broker.Config{Workers: -2}, "Workers"},
		{broker.Config{Backpressure: 7}, "Backpressure"},
		{broker.Config{SysInterval: time.Millisecond}, "SysInterval"},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		var ce *broker.ConfigError
		switch {
		case tt.field == "" && err != nil:
			t.Errorf("Validate(%+v) = %v", tt.cfg, err)
		case tt.field != "" && (!errors.As(err, &ce) || ce.Field != tt.field):
			t.Errorf("Validate(%+v) = %v, want error on %s", tt.cfg, err, tt.field)
		}
		if tt.field != "" {
			if _, err := broker.New(tt.cfg); err == nil {
				t.Errorf("New(%+v) accepted a bad config", tt.cfg)
			}
		}
	}
}

func TestStartFailsOnBusyPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	b, err := broker.New(broker.Config{Addr: l.Addr().String(), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(t.Context()); err == nil {
		_ = b.Close(t.Context())
		t.Fatal("Start on a busy port succeeded")
	}
}

func TestQoS2PublishClosesConnection(t *testing.T) {
	sink := newRecorder()
	b := startBroker(t, broker.Config{Sink: sink})
	c := connectV3(t, b.Addr(), "dev-q2")
	tok := c.c.Publish("dt/dev-q2/telemetry", 2, false, []byte(`{}`))
	tok.WaitTimeout(waitFor) // no PUBREC ever comes; the connection closes
	ev := decodePresence(t, sink.waitTopic(t, broker.PresenceDisconnectedTopic("dev-q2"), 1)[0].Payload)
	if ev.DisconnectReason != broker.ReasonClientError {
		t.Errorf("disconnect reason %s, want %s", ev.DisconnectReason, broker.ReasonClientError)
	}
	if got := sink.withTopic("dt/dev-q2/telemetry"); len(got) != 0 {
		t.Errorf("QoS 2 message reached the sink: %+v", got)
	}
}

func TestWillMessageReachesSink(t *testing.T) {
	sink := newRecorder()
	b := startBroker(t, broker.Config{Sink: sink})
	conn, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{ClientID: "dev-will", Conn: conn})
	_, err = c.Connect(t.Context(), &paho.Connect{
		ClientID: "dev-will", CleanStart: true, KeepAlive: 30,
		WillMessage: &paho.WillMessage{Topic: "dt/dev-will/status", QoS: 1, Payload: []byte(`{"online":false}`)},
	})
	if err != nil {
		t.Fatal(err)
	}
	c.TerminateConnectionForTest()
	m := sink.waitTopic(t, "dt/dev-will/status", 1)[0]
	if string(m.Payload) != `{"online":false}` || m.ClientID != "dev-will" {
		t.Errorf("will in sink = %+v", m)
	}
}

func TestKeepAliveTimeout(t *testing.T) {
	sink := newRecorder()
	b := startBroker(t, broker.Config{Sink: sink})
	// A raw client that connects with a 1 s keep-alive and then says nothing: the broker gives up after 1.5 s.
	conn, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cp := packets.NewControlPacket(packets.CONNECT)
	c := cp.Content.(*packets.Connect)
	c.ProtocolName, c.ProtocolVersion, c.ClientID, c.KeepAlive, c.CleanStart = "MQTT", 5, "dev-sleepy", 1, true
	if _, err := cp.WriteTo(conn); err != nil {
		t.Fatal(err)
	}
	ack, err := packets.ReadPacket(conn)
	if err != nil || ack.Type != packets.CONNACK {
		t.Fatalf("CONNACK: %v %v", ack, err)
	}
	ev := decodePresence(t, sink.waitTopic(t, broker.PresenceDisconnectedTopic("dev-sleepy"), 1)[0].Payload)
	if ev.DisconnectReason != broker.ReasonKeepAlive || *ev.ClientInitiatedDisconnect {
		t.Errorf("disconnected event = %+v, want %s", ev, broker.ReasonKeepAlive)
	}
}

func TestSinkPanicIsContained(t *testing.T) {
	sink := newRecorder()
	sink.also = func(_ context.Context, m broker.Message) {
		if m.Topic == "boom" {
			panic("sink bug")
		}
	}
	b := startBroker(t, broker.Config{Sink: sink, Workers: 1})
	c := connectV5(t, b.Addr(), "dev-p")
	c.publish(t, "boom", 1, nil)
	c.publish(t, "after", 1, nil)
	sink.waitTopic(t, "after", 1) // the worker survived
	if st := b.Stats(); st.SinkPanics != 1 {
		t.Errorf("SinkPanics = %d, want 1", st.SinkPanics)
	}
}

func TestLifecycleErrors(t *testing.T) {
	b, err := broker.New(broker.Config{Addr: "127.0.0.1:0", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Republish(t.Context(), "x", nil, 0); err == nil {
		t.Error("Republish before Start succeeded")
	}
	if err := b.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(t.Context()); err == nil {
		t.Error("second Start succeeded")
	}
	if err := b.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := b.Republish(t.Context(), "x", nil, 0); !errors.Is(err, broker.ErrClosed) {
		t.Errorf("Republish after Close = %v, want ErrClosed", err)
	}
	if err := b.Start(t.Context()); !errors.Is(err, broker.ErrClosed) {
		t.Errorf("Start after Close = %v, want ErrClosed", err)
	}
	if _, err := net.Dial("tcp", b.Addr()); err == nil {
		t.Error("still listening after Close")
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b = append(s.b, p...)
	return len(p), nil
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.b)
}

func TestLogsConnectsAndRejections(t *testing.T) {
	var buf syncBuffer
	sink := newRecorder()
	b := startBroker(t, broker.Config{Sink: sink, Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	c := connectV5(t, b.Addr(), "dev-log")
	c.c.TerminateConnectionForTest()
	sink.waitTopic(t, broker.PresenceDisconnectedTopic("dev-log"), 1)
	if _, err := dialV3(t, b.Addr(), "bad#id"); err == nil {
		t.Fatal("bad client id accepted")
	}
	logs := buf.String()
	for _, want := range []string{
		`msg="MQTT client connected" component=broker client=dev-log remote=127.0.0.1:`,
		`msg="MQTT client disconnected" component=broker client=dev-log reason=CONNECTION_LOST`,
		`msg="MQTT connect rejected: client id contains '/', '+' or '#'" component=broker client=bad#id`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, `msg=""`) || strings.Contains(logs, "level=INFO msg=\"mochi") {
		t.Errorf("mochi noise in the log:\n%s", logs)
	}
}

// AWS IoT Core accepts payloads up to 128 KiB and refuses larger ones: the broker delivers a payload of
// exactly MaxPayloadBytes and closes the connection of a client that publishes one byte more.
func TestPayloadOverLimitClosesConnection(t *testing.T) {
	sink := newRecorder()
	b := startBroker(t, broker.Config{Sink: sink, Logger: quietLogger()})
	atLimit := bytes.Repeat([]byte("a"), broker.MaxPayloadBytes)
	over := append(bytes.Clone(atLimit), 'b')

	v5 := connectV5(t, b.Addr(), "dev-big5")
	v5.publish(t, "dt/dev-big5/telemetry", 1, atLimit)
	if got := sink.waitTopic(t, "dt/dev-big5/telemetry", 1); len(got[0].Payload) != broker.MaxPayloadBytes {
		t.Fatalf("payload at the limit: sink got %d bytes", len(got[0].Payload))
	}
	// No PUBACK comes: the publish fails when the connection closes, or times out.
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	if _, err := v5.c.Publish(ctx, &paho.Publish{Topic: "dt/dev-big5/over", QoS: 1, Payload: over}); err == nil {
		t.Errorf("MQTT 5 publish of %d bytes acknowledged, want refused", len(over))
	}

	v3 := connectV3(t, b.Addr(), "dev-big3")
	tok := v3.c.Publish("dt/dev-big3/over", 1, false, over)
	tok.WaitTimeout(waitFor) // no PUBACK comes; the connection closes

	for _, id := range []string{"dev-big5", "dev-big3"} {
		ev := decodePresence(t, sink.waitTopic(t, broker.PresenceDisconnectedTopic(id), 1)[0].Payload)
		if ev.DisconnectReason != broker.ReasonClientError {
			t.Errorf("%s: disconnect reason %s, want %s", id, ev.DisconnectReason, broker.ReasonClientError)
		}
	}
	for _, topic := range []string{"dt/dev-big5/over", "dt/dev-big3/over"} {
		if got := sink.withTopic(topic); len(got) != 0 {
			t.Errorf("a payload over the limit reached the sink on %s", topic)
		}
	}
}
