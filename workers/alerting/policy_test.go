package alerting

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

func overheating() Policy { return DefaultPolicies()[0].withDefaults() }
func lowBattery() Policy  { return DefaultPolicies()[1].withDefaults() }

var t0 = time.Date(2026, 11, 23, 14, 0, 0, 0, time.UTC)

// run feeds values one second apart (sequence numbers 1, 2, …) and returns the transitions as a
// string like "..F..R" (. none, F fired, R resolved) and the final state.
func run(p Policy, values ...float64) (string, State) {
	s := State{ThingName: "dev-42", Policy: p.Name}
	var out strings.Builder
	for i, v := range values {
		_, tr := Evaluate(p, &s, Reading{Value: v, At: t0.Add(time.Duration(i) * time.Second), Shard: "shard-0", Seq: fmt.Sprint(100 + i)})
		out.WriteByte(".FR"[tr])
		if tr == Fired {
			s.Firing.MarkNotified()
		}
		if tr == Resolved {
			s.Resolved.MarkNotified()
		}
	}
	return out.String(), s
}

func TestEvaluate(t *testing.T) {
	short := overheating()
	short.Cooldown = 3 * time.Second
	tests := []struct {
		name   string
		p      Policy
		values []float64
		want   string
	}{
		{"three hot readings fire", overheating(), []float64{81, 82, 83}, "..F"},
		{"a cool reading resets the count", overheating(), []float64{81, 82, 70, 81, 82, 90}, ".....F"},
		{"exactly the threshold does not breach", overheating(), []float64{80, 80, 80, 80}, "...."},
		{"stays firing while hot", overheating(), []float64{81, 82, 83, 99, 100, 85}, "..F..."},
		{"hysteresis: between clear and threshold stays firing", overheating(), []float64{81, 82, 83, 78, 76, 75, 79}, "..F...."},
		{"clears below 75", overheating(), []float64{81, 82, 83, 74.9}, "..FR"},
		{"cooldown suppresses a new incident", overheating(), []float64{81, 82, 83, 70, 90, 91, 92, 93}, "..FR...."},
		{"fires again after the cooldown", short, []float64{81, 82, 83, 70, 90, 91, 92, 93}, "..FR..F."},
		{"below policy fires at once", lowBattery(), []float64{50, 14, 13}, ".F."},
		{"below policy hysteresis", lowBattery(), []float64{14, 18, 20, 20.5}, "F..R"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := run(tt.p, tt.values...)
			if got != tt.want {
				t.Errorf("transitions %q, want %q", got, tt.want)
			}
		})
	}
}

func TestEvaluateState(t *testing.T) {
	_, s := run(overheating(), 81, 95, 83, 90)
	if s.Status != StatusFiring || s.FiredValue != 83 || s.PeakValue != 90 || s.BreachSince != t0.UnixMilli() || s.FiredAt != t0.Add(2*time.Second).UnixMilli() {
		t.Errorf("firing state %+v", s)
	}
	// The peak is the worst value since firing (95 came before it).
	_, s = run(overheating(), 81, 82, 83, 99, 70)
	if s.Status != StatusOK || s.PeakValue != 99 || s.ResolvedValue != 70 || s.IncidentID == "" || s.Resolved.ID == "" {
		t.Errorf("resolved state %+v", s)
	}
}

func TestEvaluateIgnoresReplays(t *testing.T) {
	p := overheating()
	s := State{ThingName: "dev-42", Policy: p.Name}
	r := func(seq string, v float64) Reading { return Reading{Value: v, At: t0, Shard: "shard-0", Seq: seq} }
	for _, rd := range []Reading{r("5", 81), r("5", 81), r("4", 81), r("5", 81), r("6", 81)} {
		Evaluate(p, &s, rd)
	}
	if s.Consecutive != 2 || s.Status != StatusOK {
		t.Fatalf("replayed readings were counted: %+v", s)
	}
	// 128-bit sequence numbers compare numerically, not as text.
	if !seqAfter("49590338271490256608559692538361571095921575989136588898", "9") || seqAfter("10", "9") == false {
		t.Error("seqAfter compares text")
	}
	// A reading from another shard (after resharding) counts.
	if changed, _ := Evaluate(p, &s, Reading{Value: 81, At: t0, Shard: "shard-1", Seq: "1"}); !changed {
		t.Error("reading from a new shard ignored")
	}
}

func TestUnsentResolutionHoldsBackTheNextIncident(t *testing.T) {
	p := overheating()
	p.Cooldown = 0
	s := State{ThingName: "dev-42", Policy: p.Name}
	seq := 0
	feed := func(v float64) Transition {
		seq++
		_, tr := Evaluate(p, &s, Reading{Value: v, At: t0.Add(time.Duration(seq) * time.Second), Shard: "s", Seq: fmt.Sprint(seq)})
		return tr
	}
	for _, v := range []float64{81, 82, 83} {
		feed(v)
	}
	feed(70) // resolved; neither email sent yet (a crash, say)
	for range 5 {
		if feed(90) == Fired {
			t.Fatal("a new incident fired while the last one's emails were owed")
		}
	}
	s.Firing.MarkNotified()
	s.Resolved.MarkNotified()
	if feed(90) != Fired {
		t.Fatal("did not fire once the owed emails went out")
	}
}

func TestPolicyValidate(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	base := overheating()
	tests := []struct {
		field  string
		mutate func(p *Policy)
	}{
		{"name", func(p *Policy) { p.Name = "Over Heat" }},
		{"metric", func(p *Policy) { p.Metric = "temp/x" }},
		{"comparison", func(p *Policy) { p.Comparison = "around" }},
		{"clear", func(p *Policy) { p.Clear = f(85) }},
		{"consecutive", func(p *Policy) { p.Consecutive = -1 }},
		{"cooldown", func(p *Policy) { p.Cooldown = -time.Second }},
		{"severity", func(p *Policy) { p.Severity = "meh" }},
	}
	for _, tt := range tests {
		p := base
		tt.mutate(&p)
		err := p.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.field) {
			t.Errorf("%s: Validate() = %v, want an error naming the field", tt.field, err)
		}
	}
	if err := ValidatePolicies(DefaultPolicies()); err != nil {
		t.Errorf("default policies: %v", err)
	}
	if err := ValidatePolicies([]Policy{base, base}); err == nil {
		t.Error("duplicate names accepted")
	}
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("zero config: %v", err)
	}
}

func TestRenderGolden(t *testing.T) {
	_, firing := run(overheating(), 81, 82, 93.1)
	_, resolved := run(overheating(), 81, 82, 93.1, 95.2, 72.4)
	_, battery := run(lowBattery(), 12)
	long := firing
	long.ThingName = strings.Repeat("very-long-thing-name-", 6)
	tests := []struct {
		name        string
		n           Notification
		wantSubject string
	}{
		{"firing", Notification{Kind: KindFiring, Policy: overheating(), State: firing}, "[CRITICAL] temperature 93.1 > 80 on dev-42"},
		{"resolved", Notification{Kind: KindResolved, Policy: overheating(), State: resolved}, "[RESOLVED] temperature 72.4 < 75 on dev-42"},
		{"battery", Notification{Kind: KindFiring, Policy: lowBattery(), State: battery}, "[WARNING] battery 12 < 15 on dev-42"},
		{"long-thing", Notification{Kind: KindFiring, Policy: overheating(), State: long}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			subj := tt.n.Subject()
			if tt.wantSubject != "" && subj != tt.wantSubject {
				t.Errorf("subject %q, want %q", subj, tt.wantSubject)
			}
			if len(subj) > MaxSubjectLen || strings.ContainsAny(subj, "\r\n") {
				t.Errorf("subject %q breaks SNS limits", subj)
			}
			got := "Subject: " + subj + "\n\n" + tt.n.Body()
			path := filepath.Join("..", "testdata", "alert-"+tt.name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if got != string(want) {
				t.Errorf("rendering differs from %s:\n%s", path, got)
			}
		})
	}
}

func TestPolicyFromConfig(t *testing.T) {
	yamlLike := []byte(`[{"name":"hot","metric":"env.temperature","comparison":"above","threshold":70,"clear":65,
		"consecutive":2,"cooldown":"90s","severity":"critical","runbook":"Open the window."}]`)
	var ps []Policy
	if err := json.Unmarshal(yamlLike, &ps); err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 || ps[0].Cooldown != 90*time.Second || *ps[0].Clear != 65 || ps[0].Metric != "env.temperature" {
		t.Fatalf("decoded %+v", ps)
	}
	if err := ValidatePolicies(ps); err != nil {
		t.Fatal(err)
	}
	back, err := json.Marshal(ps[0])
	if err != nil || !strings.Contains(string(back), `"cooldown":"1m30s"`) {
		t.Errorf("marshal: %s %v", back, err)
	}
	for _, bad := range []string{`{"name":"x","cooldown":"soon"}`, `{"name":"x","treshold":5}`} {
		var p Policy
		if err := json.Unmarshal([]byte(bad), &p); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
