package kinesis

import (
	"context"
	"testing"
	"time"
)

func TestPublishSubscribeCheckpointAndResume(t *testing.T) {
	e := newEnv(t, 2)
	pub := e.publisher(t)
	sent := publishN(t, pub, e.stream, "a", 300, 17)

	group := "g1"
	sub := e.subscriber(t, e.subConfig(group, "w1"))
	ch, err := sub.Subscribe(context.Background(), e.stream)
	if err != nil {
		t.Fatal(err)
	}
	c := newCollector()
	done := make(chan struct{})
	go func() { c.consume(ch, nil); close(done) }()
	waitFor(t, 10*time.Second, "300 messages", func() bool { return c.distinct() == len(sent) })
	for _, p := range sent {
		if n := c.count(p); n != 1 {
			t.Errorf("payload %s delivered %d times, want once", p, n)
		}
	}
	// Metadata and UUIDs survive the envelope.
	for _, m := range c.all[:5] {
		if m.Metadata.Get(MetadataStream) != e.stream || m.Metadata.Get(MetadataShardID) == "" || m.Metadata.Get(MetadataArrivalTime) == "" {
			t.Errorf("metadata %v", m.Metadata)
		}
		if m.UUID[:2] != "a-" {
			t.Errorf("uuid %q not the published one", m.UUID)
		}
	}
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	<-done
	// Per-shard order is kept.
	for shard, seqs := range c.order {
		for i := 1; i < len(seqs); i++ {
			if compareSeq(seqs[i-1], seqs[i]) >= 0 {
				t.Fatalf("shard %s out of order at %d: %s then %s", shard, i, seqs[i-1], seqs[i])
			}
		}
	}
	// Graceful close wrote final checkpoints at the last record of each shard and released.
	for shard, l := range e.leasesOf(t, group) {
		seqs := c.order[shard]
		if len(seqs) == 0 {
			continue
		}
		if l.Checkpoint != seqs[len(seqs)-1] || l.Owner != "" {
			t.Errorf("shard %s lease %+v, want checkpoint %s and no owner", shard, l, seqs[len(seqs)-1])
		}
	}

	// A restart of the group resumes after the checkpoint: only new records arrive.
	more := publishN(t, pub, e.stream, "b", 50, 7)
	sub2 := e.subscriber(t, e.subConfig(group, "w2"))
	ch2, err := sub2.Subscribe(context.Background(), e.stream)
	if err != nil {
		t.Fatal(err)
	}
	c2 := newCollector()
	go c2.consume(ch2, nil)
	waitFor(t, 10*time.Second, "50 new messages", func() bool { return c2.distinct() == len(more) })
	time.Sleep(300 * time.Millisecond) // leave room for any wrong redelivery to show
	for _, p := range sent {
		if n := c2.count(p); n != 0 {
			t.Fatalf("already acked %s redelivered after a graceful restart", p)
		}
	}
}
