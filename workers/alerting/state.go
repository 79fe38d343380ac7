package alerting

import (
	"math/big"
	"strconv"
	"time"

	"github.com/thingpipe/thingpipe/events"
	"github.com/thingpipe/thingpipe/workers/claim"
)

// Status of an alert.
type Status string

const (
	StatusOK     Status = "OK"
	StatusFiring Status = "FIRING"
)

// State is one item of thingpipe-alerts (key alertKey = "<thing>#<policy>"). Times are epoch ms.
type State struct {
	ThingName string `dynamodbav:"thingName"`
	Policy    string `dynamodbav:"policy"`
	Status    Status `dynamodbav:"status"`
	// Consecutive counts breaching readings in a row while OK; BreachSince is the first of them.
	Consecutive   int     `dynamodbav:"consecutive"`
	BreachSince   int64   `dynamodbav:"breachSince,omitempty"`
	IncidentID    string  `dynamodbav:"incidentId,omitempty"`
	FiredAt       int64   `dynamodbav:"firedAt,omitempty"`
	FiredValue    float64 `dynamodbav:"firedValue,omitempty"`
	PeakValue     float64 `dynamodbav:"peakValue,omitempty"`
	ResolvedAt    int64   `dynamodbav:"resolvedAt,omitempty"`
	ResolvedValue float64 `dynamodbav:"resolvedValue,omitempty"`
	// LastShard/LastSeq identify the last reading that changed the state, so a redelivered reading
	// is not counted twice.
	LastShard string `dynamodbav:"lastShard,omitempty"`
	LastSeq   string `dynamodbav:"lastSeq,omitempty"`
	// Firing and Resolved are the notifications owed for the current incident.
	Firing   claim.Notice `dynamodbav:"firing"`
	Resolved claim.Notice `dynamodbav:"resolved"`
}

// Key is the alertKey of (thing, policy).
func Key(thing, policy string) string { return thing + "#" + policy }

// Reading is one value of a policy's metric.
type Reading struct {
	Value float64
	At    time.Time // Kinesis arrival time (or the device's ts, or receipt time)
	Shard string
	Seq   string // Kinesis sequence number; "" when unknown (no deduplication)
}

// Transition is what Evaluate did.
type Transition int

const (
	None Transition = iota
	Fired
	Resolved
)

// Evaluate folds reading r into state s under policy p (pure). It reports whether s changed and
// which transition happened. Rules:
//   - a reading already applied (same shard, sequence number not after LastSeq) changes nothing;
//   - OK: breaching readings count up; at p.Consecutive the alert fires, unless the last incident
//     resolved less than p.Cooldown ago or its notifications are still owed (it fires on a later
//     reading then); a non-breaching reading resets the count;
//   - FIRING: a reading past the clear threshold resolves; readings between the clear threshold and
//     the threshold change nothing (hysteresis); worse readings raise the peak.
func Evaluate(p Policy, s *State, r Reading) (bool, Transition) {
	if r.Seq != "" && r.Shard == s.LastShard && !seqAfter(r.Seq, s.LastSeq) {
		return false, None
	}
	changed, tr := false, None
	switch s.Status {
	case StatusFiring:
		switch {
		case p.Clears(r.Value):
			s.Status = StatusOK
			s.ResolvedAt, s.ResolvedValue = r.At.UnixMilli(), r.Value
			s.Consecutive, s.BreachSince = 0, 0
			s.Resolved = claim.Owe(events.DeterministicID(events.TypeAlertResolved, s.IncidentID))
			changed, tr = true, Resolved
		case p.worse(r.Value, s.PeakValue):
			s.PeakValue = r.Value
			changed = true
		}
	default:
		if s.Status == "" {
			s.Status = StatusOK
			changed = true
		}
		if !p.Breaches(r.Value) {
			if s.Consecutive != 0 || s.BreachSince != 0 {
				s.Consecutive, s.BreachSince = 0, 0
				changed = true
			}
			break
		}
		if s.Consecutive < p.Consecutive {
			s.Consecutive++
			changed = true
		}
		if s.BreachSince == 0 {
			s.BreachSince = r.At.UnixMilli()
			changed = true
		}
		cooled := s.ResolvedAt == 0 || r.At.Sub(time.UnixMilli(s.ResolvedAt)) >= p.Cooldown
		if s.Consecutive >= p.Consecutive && cooled && !s.Firing.Pending() && !s.Resolved.Pending() {
			s.Status = StatusFiring
			s.IncidentID = events.DeterministicID("incident", Key(s.ThingName, s.Policy), strconv.FormatInt(r.At.UnixMilli(), 10), r.Shard, r.Seq)
			s.FiredAt, s.FiredValue, s.PeakValue = r.At.UnixMilli(), r.Value, r.Value
			s.ResolvedAt, s.ResolvedValue = 0, 0
			s.Firing = claim.Owe(events.DeterministicID(events.TypeAlertFiring, s.IncidentID))
			s.Resolved = claim.Notice{}
			changed, tr = true, Fired
		}
	}
	if changed && r.Seq != "" {
		s.LastShard, s.LastSeq = r.Shard, r.Seq
	}
	return changed, tr
}

// seqAfter compares Kinesis sequence numbers (decimal strings up to 128 bits): a > b. An empty b is
// before everything.
func seqAfter(a, b string) bool {
	if b == "" {
		return true
	}
	x, ok1 := new(big.Int).SetString(a, 10)
	y, ok2 := new(big.Int).SetString(b, 10)
	if !ok1 || !ok2 {
		return a > b
	}
	return x.Cmp(y) > 0
}
