// Package broker is the embedded MQTT broker that stands in for AWS IoT Core's message broker when
// thingpipe runs locally. It is built on mochi-mqtt (MQTT 3.1.1 and 5), publishes AWS-shaped lifecycle
// events ($aws/events/presence/...) on connect and disconnect, lets clients stand in for the AWS IoT
// registry ($aws/events/thing/<thing>/created), and hands every message to a Sink (the rules bridge)
// through a bounded queue.
package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// Message is one MQTT message as the broker received it.
type Message struct {
	Topic   string
	Payload []byte
	// ClientID is the publishing client's id; empty for messages the broker itself publishes (lifecycle
	// and registry events from PublishRegistryEvent, Republish).
	ClientID string
	QoS      byte
	// Principal identifies who authenticated: the MQTT username when the client sent one, else its client
	// id (locally nothing is authenticated). Empty for the broker's own messages.
	Principal string
	Time      time.Time // when the broker received (or produced) the message
}

// Sink receives every message published to the broker. HandleMessage is called from a few worker
// goroutines; messages with the same client id arrive in order on one worker. It must not keep the
// Payload's backing array beyond the call if it modifies it. ctx is cancelled only if Close gives up
// draining; a sink that republishes should pass this ctx to Broker.Republish.
type Sink interface {
	HandleMessage(ctx context.Context, m Message)
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(ctx context.Context, m Message)

// HandleMessage calls f.
func (f SinkFunc) HandleMessage(ctx context.Context, m Message) { f(ctx, m) }

type nopSink struct{}

func (nopSink) HandleMessage(context.Context, Message) {}

// Broker is an embedded MQTT broker. Create it with New, then Start; Close stops it.
type Broker struct {
	cfg    Config
	log    *slog.Logger
	server *mqtt.Server
	tcp    *listeners.TCP

	mu       sync.Mutex
	started  bool
	closed   bool
	disp     *dispatcher
	sessions map[*mqtt.Client]session
	version  int64 // lifecycle versionNumber: grows with every connection, shared by its two events
}

type session struct {
	id        string
	version   int64
	principal string
	ip        string
}

// New validates cfg and prepares a broker; nothing listens until Start.
func New(cfg Config) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if cfg.Sink == nil {
		cfg.Sink = nopSink{}
	}
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumQos = 1 // AWS IoT Core supports QoS 0 and 1 only (QoS 2 publishes: see hook.OnPacketRead)
	b := &Broker{
		cfg:      cfg,
		log:      cfg.Logger.With("component", "broker"),
		sessions: map[*mqtt.Client]session{},
	}
	b.server = mqtt.New(&mqtt.Options{
		Capabilities:           caps,
		Logger:                 slog.New(mochiHandler{cfg.Logger.With("component", "mochi").Handler()}),
		InlineClient:           true, // the broker publishes its own events through it
		SysTopicResendInterval: int64(cfg.SysInterval / time.Second),
	})
	if err := b.server.AddHook(&hook{b: b}, nil); err != nil {
		return nil, fmt.Errorf("broker: add hook: %w", err)
	}
	return b, nil
}

// Start listens on Config.Addr and serves clients until Close. ctx's values reach the Sink; its
// cancellation does not stop the broker (call Close, which drains).
func (b *Broker) Start(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	if b.started {
		return errors.New("broker: already started")
	}
	b.disp = newDispatcher(ctx, b.cfg)
	b.tcp = listeners.NewTCP(listeners.Config{Type: listeners.TypeTCP, ID: "tcp", Address: b.cfg.Addr})
	if err := b.server.AddListener(b.tcp); err != nil {
		_ = b.disp.close(context.Background())
		return fmt.Errorf("broker: listen on %s: %w", b.cfg.Addr, err)
	}
	if err := b.server.Serve(); err != nil {
		_ = b.disp.close(context.Background())
		return fmt.Errorf("broker: serve: %w", err)
	}
	b.started = true
	b.log.Info("MQTT broker listening", "addr", b.tcp.Address())
	return nil
}

// Addr is the address the broker listens on (with the real port when Config.Addr asked for port 0), or
// "" before Start.
func (b *Broker) Addr() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tcp == nil {
		return ""
	}
	return b.tcp.Address()
}

// Close disconnects every client (each gets its disconnected event), stops listening, then waits until
// the Sink has been handed every queued message or ctx is done. Calling it again does nothing.
func (b *Broker) Close(ctx context.Context) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	started := b.started
	b.mu.Unlock()
	if !started {
		return nil
	}
	// mochi's Close waits for every client goroutine, so all disconnected events are queued after it.
	if err := b.server.Close(); err != nil {
		b.log.Warn("closing mochi", "error", err)
	}
	err := b.disp.close(ctx)
	st := b.disp.stats()
	b.log.Info("MQTT broker stopped", "delivered", st.Delivered, "dropped", st.Dropped, "waited", st.Waited)
	return err
}

// Stats reports the sink queue's counters.
func (b *Broker) Stats() Stats {
	b.mu.Lock()
	d := b.disp
	b.mu.Unlock()
	if d == nil {
		return Stats{}
	}
	return d.stats()
}

// PublishError says why the broker could not publish a message of its own.
type PublishError struct {
	Field  string
	Reason string
}

func (e *PublishError) Error() string { return "broker: publish: " + e.Field + ": " + e.Reason }

// Republish publishes payload on topic as the broker (the rules' republish action): subscribers get it
// and so does the Sink. qos is 0 or 1. From inside Sink.HandleMessage pass the ctx it was given: the
// message is then queued behind the current one on the same worker and Republish never waits.
func (b *Broker) Republish(ctx context.Context, topic string, payload []byte, qos byte) error {
	if topic == "" || strings.ContainsAny(topic, "+#") {
		return &PublishError{Field: "topic", Reason: fmt.Sprintf("%q must be non-empty and contain no wildcard", topic)}
	}
	if qos > 1 {
		return &PublishError{Field: "qos", Reason: fmt.Sprintf("%d is not supported (AWS IoT Core supports 0 and 1)", qos)}
	}
	return b.publish(ctx, topic, topic, payload, qos)
}

// PublishRegistryEvent publishes the AWS IoT registry event for thingName having been created (as
// RegisterThing or CreateThing would) on $aws/events/thing/<thingName>/created.
func (b *Broker) PublishRegistryEvent(ctx context.Context, thingName string, attributes map[string]string) error {
	if !validTopicLevel(thingName) {
		return &NameError{Field: "thing name", Name: thingName}
	}
	ev := NewThingCreatedEvent(b.cfg.AccountID, thingName, uuid.NewString(), attributes, time.Now())
	payload, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("broker: encode registry event for %s: %w", thingName, err)
	}
	// Keyed by thing name: the thing's registry event and its own (client id = thing name) messages
	// reach the sink in order.
	return b.publish(ctx, thingName, ThingCreatedTopic(thingName), payload, 1)
}

// publish queues the broker's own message for the sink, then delivers it to subscribers.
func (b *Broker) publish(ctx context.Context, key, topic string, payload []byte, qos byte) error {
	b.mu.Lock()
	d, closed := b.disp, b.closed
	b.mu.Unlock()
	if d == nil {
		return errors.New("broker: not started")
	}
	m := Message{Topic: topic, Payload: payload, QoS: qos, Time: time.Now()}
	if err := d.offer(ctx, key, m); err != nil {
		return fmt.Errorf("broker: publish %s: %w", topic, err)
	}
	if closed {
		return nil // no subscribers are left to deliver to
	}
	if err := b.server.Publish(topic, payload, false, qos); err != nil {
		return fmt.Errorf("broker: publish %s: %w", topic, err)
	}
	return nil
}

// mochiHandler keeps mochi's own logs to warnings and errors (its Info lines repeat what the broker logs),
// minus the message-less warning its TCP listener logs for every connection that ends with an error:
// OnDisconnect already logs why each client went away.
type mochiHandler struct{ slog.Handler }

func (h mochiHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && h.Handler.Enabled(ctx, l)
}

func (h mochiHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "" {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h mochiHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return mochiHandler{h.Handler.WithAttrs(attrs)}
}

func (h mochiHandler) WithGroup(name string) slog.Handler {
	return mochiHandler{h.Handler.WithGroup(name)}
}
