package broker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/thingpipe/thingpipe/broker"
)

const waitFor = 5 * time.Second

// recorder is a Sink that keeps every message, optionally holding each call until gate is closed.
type recorder struct {
	mu      sync.Mutex
	msgs    []broker.Message
	changed chan struct{}
	gate    chan struct{} // nil: never wait
	also    func(ctx context.Context, m broker.Message)
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{}, 1)} }

func (r *recorder) HandleMessage(ctx context.Context, m broker.Message) {
	if r.gate != nil {
		<-r.gate
	}
	if r.also != nil {
		r.also(ctx, m)
	}
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

func (r *recorder) all() []broker.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]broker.Message(nil), r.msgs...)
}

func (r *recorder) withTopic(topic string) []broker.Message {
	var out []broker.Message
	for _, m := range r.all() {
		if m.Topic == topic {
			out = append(out, m)
		}
	}
	return out
}

// waitTopic waits until the sink has n messages on topic and returns them.
func (r *recorder) waitTopic(t *testing.T, topic string, n int) []broker.Message {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		if got := r.withTopic(topic); len(got) >= n {
			return got
		}
		select {
		case <-r.changed:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("sink: want %d messages on %s, got %d; all: %v", n, topic, len(r.withTopic(topic)), topics(r.all()))
		}
	}
}

func topics(ms []broker.Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Topic)
	}
	return out
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startBroker starts a broker on a free loopback port; it is closed (drained) at the end of the test.
func startBroker(t *testing.T, cfg broker.Config) *broker.Broker {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	b, err := broker.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := b.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

// received collects the publishes an MQTT client receives.
type received struct {
	mu   sync.Mutex
	msgs []receivedMsg
}

type receivedMsg struct {
	topic   string
	payload []byte
}

func (r *received) add(topic string, payload []byte) {
	r.mu.Lock()
	r.msgs = append(r.msgs, receivedMsg{topic, append([]byte(nil), payload...)})
	r.mu.Unlock()
}

func (r *received) wait(t *testing.T, n int) []receivedMsg {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		r.mu.Lock()
		got := append([]receivedMsg(nil), r.msgs...)
		r.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("subscriber: want %d messages, got %d", n, len(got))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// client is the little a test needs from an MQTT client, so tests run on both protocol versions.
type client interface {
	publish(t *testing.T, topic string, qos byte, payload []byte)
	subscribe(t *testing.T, filter string) *received
	disconnect(t *testing.T)
}

type v5client struct {
	c   *paho.Client
	rcv *received
}

// dialV5 connects an MQTT 5 client (eclipse/paho.golang) and returns the CONNACK.
func dialV5(t *testing.T, addr, clientID, username string) (*v5client, *paho.Connack, error) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	rcv := &received{}
	c := paho.NewClient(paho.ClientConfig{
		ClientID: clientID,
		Conn:     conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) {
				rcv.add(pr.Packet.Topic, pr.Packet.Payload)
				return true, nil
			},
		},
	})
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	cp := &paho.Connect{ClientID: clientID, CleanStart: true, KeepAlive: 30}
	if username != "" {
		cp.Username, cp.UsernameFlag = username, true
	}
	ca, err := c.Connect(ctx, cp)
	if err != nil {
		_ = conn.Close()
		return nil, ca, err
	}
	return &v5client{c: c, rcv: rcv}, ca, nil
}

func connectV5(t *testing.T, addr, clientID string) *v5client {
	t.Helper()
	c, _, err := dialV5(t, addr, clientID, "")
	if err != nil {
		t.Fatalf("connect %s (MQTT 5): %v", clientID, err)
	}
	t.Cleanup(func() { _ = c.c.Disconnect(&paho.Disconnect{}) })
	return c
}

func (c *v5client) publish(t *testing.T, topic string, qos byte, payload []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	resp, err := c.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Payload: payload})
	if err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
	if qos > 0 && resp.ReasonCode >= 0x80 {
		t.Fatalf("publish %s: PUBACK reason 0x%02x", topic, resp.ReasonCode)
	}
}

func (c *v5client) subscribe(t *testing.T, filter string) *received {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	sa, err := c.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
	if err != nil {
		t.Fatalf("subscribe %s: %v", filter, err)
	}
	if len(sa.Reasons) != 1 || sa.Reasons[0] >= 0x80 {
		t.Fatalf("subscribe %s: SUBACK reasons %v", filter, sa.Reasons)
	}
	return c.rcv
}

func (c *v5client) disconnect(t *testing.T) {
	t.Helper()
	if err := c.c.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatalf("disconnect: %v", err)
	}
}

type v3client struct {
	c   mqtt3.Client
	rcv *received
}

// dialV3 connects an MQTT 3.1.1 client (eclipse/paho.mqtt.golang).
func dialV3(t *testing.T, addr, clientID string) (*v3client, error) {
	t.Helper()
	rcv := &received{}
	opts := mqtt3.NewClientOptions().
		AddBroker("tcp://" + addr).
		SetClientID(clientID).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(waitFor).
		SetDefaultPublishHandler(func(_ mqtt3.Client, m mqtt3.Message) { rcv.add(m.Topic(), m.Payload()) })
	c := mqtt3.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(waitFor) {
		return nil, fmt.Errorf("connect %s: timed out", clientID)
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	return &v3client{c: c, rcv: rcv}, nil
}

func connectV3(t *testing.T, addr, clientID string) *v3client {
	t.Helper()
	c, err := dialV3(t, addr, clientID)
	if err != nil {
		t.Fatalf("connect %s (MQTT 3.1.1): %v", clientID, err)
	}
	t.Cleanup(func() { c.c.Disconnect(50) })
	return c
}

func (c *v3client) publish(t *testing.T, topic string, qos byte, payload []byte) {
	t.Helper()
	tok := c.c.Publish(topic, qos, false, payload)
	if !tok.WaitTimeout(waitFor) {
		t.Fatalf("publish %s: timed out", topic)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
}

func (c *v3client) subscribe(t *testing.T, filter string) *received {
	t.Helper()
	tok := c.c.Subscribe(filter, 1, nil)
	if !tok.WaitTimeout(waitFor) {
		t.Fatalf("subscribe %s: timed out", filter)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("subscribe %s: %v", filter, err)
	}
	return c.rcv
}

func (c *v3client) disconnect(*testing.T) { c.c.Disconnect(50) }

// protocols runs a test body once per MQTT version.
var protocols = []struct {
	name    string
	connect func(t *testing.T, addr, clientID string) client
}{
	{"mqtt5", func(t *testing.T, addr, id string) client { return connectV5(t, addr, id) }},
	{"mqtt311", func(t *testing.T, addr, id string) client { return connectV3(t, addr, id) }},
}

func decodePresence(t *testing.T, payload []byte) broker.PresenceEvent {
	t.Helper()
	var ev broker.PresenceEvent
	dec := json.NewDecoder(strings.NewReader(string(payload)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ev); err != nil {
		t.Fatalf("decode presence event %s: %v", payload, err)
	}
	return ev
}
