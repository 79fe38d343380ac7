// Package alerting is the alerting stage: it evaluates alert policies on telemetry read from Kinesis,
// keeps one state item per (thing, policy) in DynamoDB thingpipe-alerts, changed only by
// conditional writes, and sends operators one SNS email (topic thingpipe-alerts) when an incident
// fires and one when it resolves.
package alerting

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"time"
)

// Comparison says which side of the threshold is bad.
type Comparison string

const (
	Above Comparison = "above"
	Below Comparison = "below"
)

// Severities, also the SNS "severity" attribute.
const (
	SeverityCritical = "critical"
	SeverityWarning  = "warning"
	SeverityInfo     = "info"
)

// Policy is one alert rule. Fire when Metric is beyond Threshold for Consecutive readings in a row;
// resolve when it is back beyond Clear (hysteresis: between Clear and Threshold nothing changes); do
// not fire again within Cooldown of the last resolution.
type Policy struct {
	Name       string     `json:"name"`
	Metric     string     `json:"metric"` // dotted path in the telemetry object, e.g. "temperature"
	Comparison Comparison `json:"comparison"`
	Threshold  float64    `json:"threshold"`
	// Clear is the clear threshold; default Threshold (no hysteresis).
	Clear       *float64      `json:"clear,omitempty"`
	Consecutive int           `json:"consecutive,omitempty"` // default 1
	Cooldown    time.Duration `json:"cooldown,omitempty"`
	Severity    string        `json:"severity"`
	Runbook     string        `json:"runbook,omitempty"`
}

// DefaultPolicies are shipped with thingpipe.
func DefaultPolicies() []Policy {
	f := func(v float64) *float64 { return &v }
	return []Policy{
		{
			Name: "overheating", Metric: "temperature", Comparison: Above, Threshold: 80, Clear: f(75),
			Consecutive: 3, Cooldown: 10 * time.Minute, Severity: SeverityCritical,
			Runbook: "Check the device's ventilation and ambient temperature. If it keeps rising, power it " +
				"down remotely and send a technician; sustained heat damages the battery.",
		},
		{
			Name: "low-battery", Metric: "battery", Comparison: Below, Threshold: 15, Clear: f(20),
			Consecutive: 1, Cooldown: 30 * time.Minute, Severity: SeverityWarning,
			Runbook: "Schedule a battery replacement or recharge. The device will stop reporting when the " +
				"battery is empty.",
		},
	}
}

var (
	policyNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
	metricRE     = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)
)

func (p Policy) withDefaults() Policy {
	if p.Consecutive == 0 {
		p.Consecutive = 1
	}
	if p.Clear == nil {
		c := p.Threshold
		p.Clear = &c
	}
	if p.Severity == "" {
		p.Severity = SeverityWarning
	}
	return p
}

// Validate reports the first bad field of the policy.
func (p Policy) Validate() error {
	p = p.withDefaults()
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("alert policy %q: %s: %s", p.Name, field, fmt.Sprintf(format, args...))
	}
	switch {
	case !policyNameRE.MatchString(p.Name):
		return bad("name", "want lower-case letters, digits, '-' or '_' (1-64)")
	case len(p.Metric) > 64 || !metricRE.MatchString(p.Metric):
		return bad("metric", "%q is not a dotted path of letters, digits, '-', '_'", p.Metric)
	case p.Comparison != Above && p.Comparison != Below:
		return bad("comparison", "%q: want above or below", p.Comparison)
	case math.IsNaN(p.Threshold) || math.IsInf(p.Threshold, 0):
		return bad("threshold", "not a finite number")
	case math.IsNaN(*p.Clear) || math.IsInf(*p.Clear, 0):
		return bad("clear", "not a finite number")
	case p.Comparison == Above && *p.Clear > p.Threshold:
		return bad("clear", "%v is above the threshold %v; for an 'above' policy it must be at or below it", *p.Clear, p.Threshold)
	case p.Comparison == Below && *p.Clear < p.Threshold:
		return bad("clear", "%v is below the threshold %v; for a 'below' policy it must be at or above it", *p.Clear, p.Threshold)
	case p.Consecutive < 1 || p.Consecutive > 1000:
		return bad("consecutive", "%d: want 1-1000", p.Consecutive)
	case p.Cooldown < 0:
		return bad("cooldown", "negative")
	case p.Severity != SeverityCritical && p.Severity != SeverityWarning && p.Severity != SeverityInfo:
		return bad("severity", "%q: want critical, warning or info", p.Severity)
	case len(p.Runbook) > 4000:
		return bad("runbook", "longer than 4000 bytes")
	}
	return nil
}

// ValidatePolicies checks each policy and that names are unique.
func ValidatePolicies(ps []Policy) error {
	if len(ps) == 0 {
		return errors.New("alerting: no policies")
	}
	seen := map[string]bool{}
	for _, p := range ps {
		if err := p.Validate(); err != nil {
			return err
		}
		if seen[p.Name] {
			return fmt.Errorf("alert policy %q: name: defined twice", p.Name)
		}
		seen[p.Name] = true
	}
	return nil
}

// Breaches reports whether v is on the bad side of the threshold (strictly).
func (p Policy) Breaches(v float64) bool {
	if p.Comparison == Below {
		return v < p.Threshold
	}
	return v > p.Threshold
}

// Clears reports whether v is back on the good side of the clear threshold (strictly).
func (p Policy) Clears(v float64) bool {
	c := p.Threshold
	if p.Clear != nil {
		c = *p.Clear
	}
	if p.Comparison == Below {
		return v > c
	}
	return v < c
}

// worse reports whether a is further on the bad side than b.
func (p Policy) worse(a, b float64) bool {
	if p.Comparison == Below {
		return a < b
	}
	return a > b
}

// policyJSON is Policy with the cooldown as a Go duration string ("10m", "90s"), the form config
// files use.
type policyJSON struct {
	Name        string     `json:"name"`
	Metric      string     `json:"metric"`
	Comparison  Comparison `json:"comparison"`
	Threshold   float64    `json:"threshold"`
	Clear       *float64   `json:"clear,omitempty"`
	Consecutive int        `json:"consecutive,omitempty"`
	Cooldown    string     `json:"cooldown,omitempty"`
	Severity    string     `json:"severity"`
	Runbook     string     `json:"runbook,omitempty"`
}

// MarshalJSON writes the cooldown as a duration string.
func (p Policy) MarshalJSON() ([]byte, error) {
	j := policyJSON{p.Name, p.Metric, p.Comparison, p.Threshold, p.Clear, p.Consecutive, "", p.Severity, p.Runbook}
	if p.Cooldown != 0 {
		j.Cooldown = p.Cooldown.String()
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads a policy whose cooldown is a duration string such as "10m".
func (p *Policy) UnmarshalJSON(b []byte) error {
	var j policyJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields() // a misspelt field in a config file must not pass silently
	if err := dec.Decode(&j); err != nil {
		return fmt.Errorf("alert policy: %w", err)
	}
	*p = Policy{Name: j.Name, Metric: j.Metric, Comparison: j.Comparison, Threshold: j.Threshold, Clear: j.Clear,
		Consecutive: j.Consecutive, Severity: j.Severity, Runbook: j.Runbook}
	if j.Cooldown != "" {
		d, err := time.ParseDuration(j.Cooldown)
		if err != nil {
			return fmt.Errorf("alert policy %q: cooldown: %w", j.Name, err)
		}
		p.Cooldown = d
	}
	return nil
}
