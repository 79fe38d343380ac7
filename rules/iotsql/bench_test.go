package iotsql

import (
	"encoding/json"
	"testing"
)

// ruleSet is 20 rules of the shapes thingpipe deploys: telemetry, lifecycle events, binding and
// provisioning. Exactly one matches the benchmark message.
var ruleSet = []string{
	"SELECT *, topic(2) AS thing FROM 'dt/+/telemetry' WHERE metrics.temperature > 20 AND status = 'ok'", // matches
	"SELECT deviceId, metrics.temperature AS t FROM 'dt/+/telemetry' WHERE metrics.temperature > 80",
	"SELECT deviceId, metrics.battery AS b FROM 'dt/+/telemetry' WHERE metrics.battery < 3.3",
	"SELECT deviceId, status FROM 'dt/+/telemetry' WHERE status = 'error' OR status = 'fault'",
	"SELECT deviceId FROM 'dt/+/telemetry' WHERE metrics.rssi < -90",
	"SELECT deviceId FROM 'dt/+/telemetry' WHERE metrics.humidity > 95 OR metrics.humidity < 5",
	"SELECT * FROM 'dt/+/status' WHERE state = 'offline'",
	"SELECT * FROM 'dt/+/alerts'",
	"SELECT clientId, eventType, timestamp FROM '$aws/events/presence/connected/+'",
	"SELECT clientId, eventType, disconnectReason FROM '$aws/events/presence/disconnected/+'",
	"SELECT * FROM '$aws/events/thing/+/created'",
	"SELECT * FROM '$aws/things/+/shadow/update/accepted' WHERE state.reported.fw <> state.desired.fw",
	"SELECT userId, thingName FROM 'app/+/bind' WHERE action = 'bind'",
	"SELECT userId, thingName FROM 'app/+/unbind'",
	"SELECT * FROM 'prov/+/complete' WHERE result = 'ok'",
	"SELECT * FROM 'prov/+/failed'",
	"SELECT * FROM 'cmd/#'",
	"SELECT * FROM 'fleet/+/+/telemetry' WHERE seq > 0",
	"SELECT deviceId FROM 'dt/+/telemetry' WHERE fw IN ['1.0.0', '1.1.0'] AND seq > 1000",
	"SELECT deviceId FROM 'dt/+/telemetry' WHERE startswith(deviceId, 'test-')",
}

var benchPayload = []byte(telemetry)

func BenchmarkJSONDecodeBaseline(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(benchPayload)))
	for b.Loop() {
		var v any
		if err := json.Unmarshal(benchPayload, &v); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRuleSet decodes the payload once (inside Eval, through the Message cache) and evaluates
// all 20 rules on it, as the rules bridge does for each incoming message.
func BenchmarkRuleSet(b *testing.B) {
	qs := make([]*Query, len(ruleSet))
	for i, sql := range ruleSet {
		qs[i] = mustCompile(b, sql, Version20160323)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(benchPayload)))
	matched := 0
	for b.Loop() {
		m := &Message{Topic: "dt/dev-0042/telemetry", Payload: benchPayload}
		matched = 0
		for _, q := range qs {
			r, err := q.Eval(m)
			if err != nil {
				b.Fatal(err)
			}
			if r.Matched {
				matched++
			}
		}
	}
	if matched != 1 {
		b.Fatalf("%d rules matched, want 1", matched)
	}
}

// BenchmarkRuleSetNonMatching is the same rule set on a message that was already decoded and that
// no rule matches: the steady cost of a rule that does not fire.
func BenchmarkRuleSetNonMatching(b *testing.B) {
	qs := make([]*Query, 0, len(ruleSet))
	for _, sql := range ruleSet[1:] {
		qs = append(qs, mustCompile(b, sql, Version20160323))
	}
	m := &Message{Topic: "dt/dev-0042/telemetry", Payload: benchPayload}
	b.ReportAllocs()
	for b.Loop() {
		for _, q := range qs {
			if r, _ := q.Eval(m); r.Matched {
				b.Fatal("matched")
			}
		}
	}
}

func BenchmarkCompile(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		for _, sql := range ruleSet {
			if _, err := Compile(sql, Version20160323); err != nil {
				b.Fatal(err)
			}
		}
	}
}
