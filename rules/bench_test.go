package rules

import (
	"testing"

	"github.com/thingpipe/thingpipe/rules/iotsql"
)

// BenchmarkEvaluateDefaultRules measures the local cost of running the whole default rule set on one
// message (what the rules bridge does per MQTT message before any AWS call).
func BenchmarkEvaluateDefaultRules(b *testing.B) {
	rs, err := LoadRules("../deploy/rules", LocalEnv)
	if err != nil {
		b.Fatal(err)
	}
	for _, name := range []string{"telemetry.json", "bind.json"} {
		msg, err := ReadSampleMessage("../testdata/messages/" + name)
		if err != nil {
			b.Fatal(err)
		}
		payload := msg.Bytes()
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				m := &iotsql.Message{Topic: msg.Topic, ClientID: msg.ClientID, Payload: payload}
				invs, err := Evaluate(rs, m)
				if err != nil || len(invs) != 1 {
					b.Fatalf("%d invocations, %v", len(invs), err)
				}
			}
		})
	}
}
