package alerting

import (
	"github.com/ThreeDotsLabs/watermill/message"
	"strconv"
	"testing"
	"time"
)

func BenchmarkEvaluate(b *testing.B) {
	p := overheating()
	s := State{ThingName: "dev-42", Policy: p.Name}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		Evaluate(p, &s, Reading{Value: 70 + float64(i%30), At: t0.Add(time.Duration(i) * time.Second), Shard: "shardId-0", Seq: strconv.Itoa(i)})
		s.Firing.MarkNotified()
		s.Resolved.MarkNotified()
	}
}

// Handle is a watermill handler.
var _ message.NoPublishHandlerFunc = (*Stage)(nil).Handle
