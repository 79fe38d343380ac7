package broker

import (
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"time"
)

// DefaultAddr is where `thingpipe local` listens for MQTT clients: loopback only, the usual MQTT port.
const DefaultAddr = "127.0.0.1:1883"

// MaxPayloadBytes is AWS IoT Core's limit on a PUBLISH payload (128 KiB). The broker closes the
// connection of a client that publishes more, as AWS IoT does, and the message goes nowhere.
const MaxPayloadBytes = 128 * 1024

// DefaultAccountID is the account id moto uses, so registry events look like they came from that account.
const DefaultAccountID = "123456789012"

// Backpressure says what happens to a message when the sink queue it belongs to is full.
type Backpressure int

const (
	// Block makes the publisher wait until the queue has room. For a client publish this stalls that
	// client's connection (its PUBACK is sent only once the message is queued), so nothing is lost and
	// a fast client is slowed to the sink's pace. It is the default.
	Block Backpressure = iota
	// Drop discards the message, counts it in Stats.Dropped and logs it. Only for experiments: it breaks
	// the at-least-once promise that QoS 1 makes to the publishing client.
	Drop
)

func (b Backpressure) String() string {
	switch b {
	case Block:
		return "block"
	case Drop:
		return "drop"
	default:
		return fmt.Sprintf("Backpressure(%d)", int(b))
	}
}

// Config configures a Broker. The zero value is usable: every field has a default.
type Config struct {
	// Addr is the TCP address to listen on (default DefaultAddr). Port 0 picks a free port; Addr()
	// reports the one chosen.
	Addr string
	// Logger receives the broker's logs (default slog.Default()).
	Logger *slog.Logger
	// AccountID goes into registry events (default DefaultAccountID).
	AccountID string
	// Sink receives every message published to the broker. Nil means messages only reach MQTT subscribers.
	Sink Sink
	// QueueSize is how many messages each sink worker buffers before publishers wait (default 1024).
	QueueSize int
	// Workers is how many goroutines call the sink (default 4). Messages are spread over workers by
	// client id (by thing name for registry events, by the subject's client id for presence events), so
	// one client's messages reach the sink in the order it published them.
	Workers int
	// Backpressure is the policy when a worker's queue is full (default Block).
	Backpressure Backpressure
	// SysInterval is how often mochi refreshes its $SYS topics (default 30s; each refresh reads
	// runtime memory stats, which is not free).
	SysInterval time.Duration
}

// ConfigError names a Config field that has a bad value.
type ConfigError struct {
	Field  string
	Reason string
}

func (e *ConfigError) Error() string { return "broker config: " + e.Field + ": " + e.Reason }

var accountIDPattern = regexp.MustCompile(`^[0-9]{12}$`)

func (c Config) withDefaults() Config {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.AccountID == "" {
		c.AccountID = DefaultAccountID
	}
	if c.QueueSize == 0 {
		c.QueueSize = 1024
	}
	if c.Workers == 0 {
		c.Workers = 4
	}
	if c.SysInterval == 0 {
		c.SysInterval = 30 * time.Second
	}
	return c
}

// Validate reports the first bad field, after defaults are applied.
func (c Config) Validate() error {
	c = c.withDefaults()
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return &ConfigError{Field: "Addr", Reason: fmt.Sprintf("%q is not host:port: %v", c.Addr, err)}
	}
	if !accountIDPattern.MatchString(c.AccountID) {
		return &ConfigError{Field: "AccountID", Reason: fmt.Sprintf("%q is not 12 digits", c.AccountID)}
	}
	if c.QueueSize < 1 {
		return &ConfigError{Field: "QueueSize", Reason: fmt.Sprintf("must be at least 1, got %d", c.QueueSize)}
	}
	if c.Workers < 1 {
		return &ConfigError{Field: "Workers", Reason: fmt.Sprintf("must be at least 1, got %d", c.Workers)}
	}
	if c.Backpressure != Block && c.Backpressure != Drop {
		return &ConfigError{Field: "Backpressure", Reason: fmt.Sprintf("unknown policy %d", int(c.Backpressure))}
	}
	if c.SysInterval < time.Second {
		return &ConfigError{Field: "SysInterval", Reason: fmt.Sprintf("must be at least 1s, got %s", c.SysInterval)}
	}
	return nil
}
