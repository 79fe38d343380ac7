package kinesis

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// owners counts the active (not ended) leases per owner.
func (e *env) owners(t testing.TB, group string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, l := range e.leasesOf(t, group) {
		if l.Checkpoint != checkpointShardEnd {
			out[l.Owner]++
		}
	}
	return out
}

func balanced(got map[string]int, want map[string]int) bool {
	if len(got) != len(want) {
		return false
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

// TestGroupSharesShardsAndFailsOver runs one consumer group on a 6-shard stream: two workers
// split the shards 3/3, a third makes it 2/2/2 by stealing, and when one dies without releasing
// its leases (it just stops renewing) the other two take its shards after the failover time.
// Every record published is delivered at least once.
func TestGroupSharesShardsAndFailsOver(t *testing.T) {
	e := newEnv(t, 6)
	pub := e.publisher(t)
	group := "g"
	c := newCollector()
	subs := map[string]*Subscriber{}
	start := func(name string) {
		s := e.subscriber(t, e.subConfig(group, name))
		ch, err := s.Subscribe(context.Background(), e.stream)
		if err != nil {
			t.Fatal(err)
		}
		subs[name] = s
		go c.consume(ch, nil)
	}

	sent := publishN(t, pub, e.stream, "one", 600, 97)
	start("w1")
	waitFor(t, 5*time.Second, "w1 to take every shard", func() bool { return balanced(e.owners(t, group), map[string]int{"w1#1": 6}) })
	start("w2")
	waitFor(t, 10*time.Second, "a 3/3 split", func() bool {
		return balanced(e.owners(t, group), map[string]int{"w1#1": 3, "w2#1": 3})
	})
	waitFor(t, 10*time.Second, "600 records", func() bool { return c.distinct() == 600 })
	// The shards w1 handed over are no longer in its lag (a gauge would show them stale otherwise).
	waitFor(t, 10*time.Second, "w1's lag to cover only the 3 shards it kept", func() bool { return len(subs["w1"].Lag()) == 3 })

	start("w3")
	waitFor(t, 10*time.Second, "a 2/2/2 split", func() bool {
		return balanced(e.owners(t, group), map[string]int{"w1#1": 2, "w2#1": 2, "w3#1": 2})
	})
	sent = append(sent, publishN(t, pub, e.stream, "two", 300, 89)...)

	// w1 dies: its leases stay owned, their counters stop moving.
	subs["w1"].abandon()
	died := time.Now()
	sent = append(sent, publishN(t, pub, e.stream, "three", 300, 83)...)
	waitFor(t, 15*time.Second, "w2 and w3 to take w1's shards", func() bool {
		return balanced(e.owners(t, group), map[string]int{"w2#1": 3, "w3#1": 3})
	})
	if took := time.Since(died); took < 2*time.Second {
		t.Errorf("leases moved %s after the death, before the 2s failover time", took)
	} else {
		t.Logf("shards of the dead worker moved after %s", took.Round(100*time.Millisecond))
	}
	waitFor(t, 15*time.Second, fmt.Sprintf("all %d records", len(sent)), func() bool { return c.distinct() == len(sent) })
	for _, p := range sent {
		if c.count(p) == 0 {
			t.Fatalf("record %s lost", p)
		}
	}
}
