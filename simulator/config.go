package simulator

import (
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// DefaultURL is the embedded broker's default address.
const DefaultURL = "mqtt://127.0.0.1:1883"

// Config configures a fleet simulation. The zero value is usable: every field has a default.
type Config struct {
	// URL of the MQTT broker: mqtt://host:port (tcp:// too; a bare host:port means mqtt://). Default DefaultURL.
	URL string
	// Devices is how many simulated devices connect (default 10).
	Devices int
	// Rate is the aggregate telemetry rate in messages per second across all devices (default 10).
	Rate float64
	// Duration is how long telemetry runs; 0 runs until the context given to Run is done.
	Duration time.Duration
	// Seed makes the fleet reproducible: names, attributes, which devices get bound, by whom, request ids
	// and every reading (all but timestamps) depend on it only.
	Seed uint64
	// Prefix starts every thing name (default "sim-").
	Prefix string
	// SkipRegistry skips publishing $aws/events/thing/<thing>/created (use it when the things are really
	// registered, e.g. with RegisterThing against AWS).
	SkipRegistry bool
	// BindFraction is the share of devices an app user asks to bind (default 0.5). NoBind disables binds.
	BindFraction float64
	NoBind       bool
	// Users is how many app users send the bind requests (default a quarter of the bound devices, at least 1).
	Users int
	// QoS of every publish (default 1; 0 is allowed).
	QoS byte
	// QoSSet makes QoS 0 explicit (the zero value otherwise means the default, 1).
	QoSSet bool
	// AccountID goes into the registry events (default 123456789012, moto's).
	AccountID string
	// AnomalyChance is the chance, per reading, that a device's temperature starts a spike above 80 that
	// lasts 3 to 6 readings (default 0.01). LowBatteryFraction is the share of devices whose battery runs
	// down below 15 within a few readings (default 0.1). Set them negative for none.
	AnomalyChance      float64
	LowBatteryFraction float64
	// KeepAlive of every MQTT connection (default 30s).
	KeepAlive time.Duration
	// ConnectTimeout bounds each client's first connection (default 10s); PublishTimeout each publish
	// (default 10s).
	ConnectTimeout time.Duration
	PublishTimeout time.Duration
	// ConnectConcurrency is how many devices connect at once (default 16).
	ConnectConcurrency int
	// Logger receives the simulator's logs (default slog.Default()).
	Logger *slog.Logger
}

// ConfigError names a Config field that has a bad value.
type ConfigError struct {
	Field  string
	Reason string
}

func (e *ConfigError) Error() string { return "simulator config: " + e.Field + ": " + e.Reason }

var accountIDPattern = regexp.MustCompile(`^[0-9]{12}$`)

func (c Config) withDefaults() Config {
	if c.URL == "" {
		c.URL = DefaultURL
	}
	if !strings.Contains(c.URL, "://") {
		c.URL = "mqtt://" + c.URL
	}
	if c.Devices == 0 {
		c.Devices = 10
	}
	if c.Rate == 0 {
		c.Rate = 10
	}
	if c.Prefix == "" {
		c.Prefix = "sim-"
	}
	if c.BindFraction == 0 {
		c.BindFraction = 0.5
	}
	if !c.QoSSet && c.QoS == 0 {
		c.QoS = 1
	}
	if c.AccountID == "" {
		c.AccountID = "123456789012"
	}
	if c.AnomalyChance == 0 {
		c.AnomalyChance = 0.01
	}
	if c.LowBatteryFraction == 0 {
		c.LowBatteryFraction = 0.1
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = 30 * time.Second
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = 10 * time.Second
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = 10 * time.Second
	}
	if c.ConnectConcurrency == 0 {
		c.ConnectConcurrency = 16
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Users == 0 {
		c.Users = max(1, c.bound()/4)
	}
	return c
}

// bound is how many devices get a bind request.
func (c Config) bound() int {
	if c.NoBind {
		return 0
	}
	return int(math.Round(float64(c.Devices) * min(max(c.BindFraction, 0), 1)))
}

// Validate reports the first bad field, after defaults are applied.
func (c Config) Validate() error {
	c = c.withDefaults()
	u, err := url.Parse(c.URL)
	if err != nil {
		return &ConfigError{Field: "URL", Reason: err.Error()}
	}
	switch u.Scheme {
	case "mqtt", "tcp":
	default:
		return &ConfigError{Field: "URL", Reason: fmt.Sprintf("scheme %q is not supported (use mqtt:// or tcp://)", u.Scheme)}
	}
	if u.Host == "" || u.Port() == "" {
		return &ConfigError{Field: "URL", Reason: fmt.Sprintf("%q has no host:port", c.URL)}
	}
	switch {
	case c.Devices < 1 || c.Devices > 1<<20:
		return &ConfigError{Field: "Devices", Reason: fmt.Sprintf("must be between 1 and %d, got %d", 1<<20, c.Devices)}
	case c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0):
		return &ConfigError{Field: "Rate", Reason: fmt.Sprintf("must be a positive number of messages per second, got %v", c.Rate)}
	case c.Duration < 0:
		return &ConfigError{Field: "Duration", Reason: fmt.Sprintf("must not be negative, got %s", c.Duration)}
	case strings.ContainsAny(c.Prefix, "/+#") || strings.HasPrefix(c.Prefix, "$"):
		return &ConfigError{Field: "Prefix", Reason: fmt.Sprintf("%q must not contain '/', '+', '#' or start with '$'", c.Prefix)}
	case c.BindFraction < 0 || c.BindFraction > 1:
		return &ConfigError{Field: "BindFraction", Reason: fmt.Sprintf("must be between 0 and 1, got %v", c.BindFraction)}
	case c.Users < 1:
		return &ConfigError{Field: "Users", Reason: fmt.Sprintf("must be at least 1, got %d", c.Users)}
	case c.QoS > 1:
		return &ConfigError{Field: "QoS", Reason: fmt.Sprintf("must be 0 or 1 (AWS IoT Core has no QoS 2), got %d", c.QoS)}
	case !accountIDPattern.MatchString(c.AccountID):
		return &ConfigError{Field: "AccountID", Reason: fmt.Sprintf("%q is not 12 digits", c.AccountID)}
	case c.AnomalyChance > 1:
		return &ConfigError{Field: "AnomalyChance", Reason: fmt.Sprintf("must be at most 1, got %v", c.AnomalyChance)}
	case c.LowBatteryFraction > 1:
		return &ConfigError{Field: "LowBatteryFraction", Reason: fmt.Sprintf("must be at most 1, got %v", c.LowBatteryFraction)}
	case c.KeepAlive < time.Second || c.KeepAlive > math.MaxUint16*time.Second:
		return &ConfigError{Field: "KeepAlive", Reason: fmt.Sprintf("must be between 1s and 65535s, got %s", c.KeepAlive)}
	case c.ConnectTimeout <= 0:
		return &ConfigError{Field: "ConnectTimeout", Reason: "must be positive"}
	case c.PublishTimeout <= 0:
		return &ConfigError{Field: "PublishTimeout", Reason: "must be positive"}
	case c.ConnectConcurrency < 1:
		return &ConfigError{Field: "ConnectConcurrency", Reason: fmt.Sprintf("must be at least 1, got %d", c.ConnectConcurrency)}
	}
	return nil
}
