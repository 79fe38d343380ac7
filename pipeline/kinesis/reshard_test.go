package kinesis

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
)

// shardEndKinesis wraps the real client to give the end-of-shard signal Kinesis gives and moto
// 5.2 does not: once a reader of a closed shard (one ListShards shows with an
// EndingSequenceNumber) gets an empty batch, GetRecords returns no NextShardIterator. Everything
// else, records included, comes from moto.
type shardEndKinesis struct {
	SubscriberClient
	stream  string
	mu      sync.Mutex
	shardOf map[string]string // iterator -> shard
}

func (k *shardEndKinesis) GetShardIterator(ctx context.Context, in *kinesis.GetShardIteratorInput, opts ...func(*kinesis.Options)) (*kinesis.GetShardIteratorOutput, error) {
	out, err := k.SubscriberClient.GetShardIterator(ctx, in, opts...)
	if err == nil {
		k.mu.Lock()
		k.shardOf[aws.ToString(out.ShardIterator)] = aws.ToString(in.ShardId)
		k.mu.Unlock()
	}
	return out, err
}

func (k *shardEndKinesis) GetRecords(ctx context.Context, in *kinesis.GetRecordsInput, opts ...func(*kinesis.Options)) (*kinesis.GetRecordsOutput, error) {
	k.mu.Lock()
	shard := k.shardOf[aws.ToString(in.ShardIterator)]
	k.mu.Unlock()
	out, err := k.SubscriberClient.GetRecords(ctx, in, opts...)
	if err != nil {
		return out, err
	}
	if len(out.Records) == 0 {
		shards, err := listShards(ctx, k.SubscriberClient, k.stream)
		if err != nil {
			return nil, err
		}
		for _, s := range shards {
			if aws.ToString(s.ShardId) == shard && s.SequenceNumberRange != nil && s.SequenceNumberRange.EndingSequenceNumber != nil {
				out.NextShardIterator = nil
				return out, nil
			}
		}
	}
	k.mu.Lock()
	k.shardOf[aws.ToString(out.NextShardIterator)] = shard
	k.mu.Unlock()
	return out, nil
}

type delivery struct {
	shard   string
	payload string
}

// TestMergedShardStartsAfterItsParentsEnd: two shards are merged while a record of the first is
// still un-acked. The child (whose records moto fills with copies of its parents') is not leased
// until both parents reached SHARD_END with every record acked and checkpointed; then it is read
// from TRIM_HORIZON, after every parent record.
func TestMergedShardStartsAfterItsParentsEnd(t *testing.T) {
	e := newEnv(t, 2)
	cfg := e.subConfig("g", "w")
	cfg.Kinesis = &shardEndKinesis{SubscriberClient: e.kin, stream: e.stream, shardOf: map[string]string{}}
	sub := e.subscriber(t, cfg)
	ch, err := sub.Subscribe(context.Background(), e.stream)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		got  []delivery
		held *message.Message
	)
	release := make(chan struct{})
	go func() {
		for m := range ch {
			mu.Lock()
			got = append(got, delivery{m.Metadata.Get(MetadataShardID), string(m.Payload)})
			hold := held == nil && m.Metadata.Get(MetadataShardID) == "shardId-000000000000"
			if hold {
				held = m
			}
			mu.Unlock()
			if hold {
				go func() { <-release; m.Ack() }()
				continue
			}
			m.Ack()
		}
	}()
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(got) }

	publishN(t, e.publisher(t), e.stream, "r", 40, 40)
	waitFor(t, 10*time.Second, "40 parent records", func() bool { return count() == 40 })
	ctx := context.Background()
	if _, err := e.kin.MergeShards(ctx, &kinesis.MergeShardsInput{StreamName: aws.String(e.stream),
		ShardToMerge: aws.String("shardId-000000000000"), AdjacentShardToMerge: aws.String("shardId-000000000001")}); err != nil {
		t.Fatal(err)
	}
	const child = "shardId-000000000002"
	// shard 1 ends; shard 0 cannot (a record is un-acked), so the child waits.
	waitFor(t, 10*time.Second, "shard 1 to reach SHARD_END", func() bool {
		return e.leasesOf(t, "g")["shardId-000000000001"].Checkpoint == checkpointShardEnd
	})
	time.Sleep(4 * cfg.TakeInterval)
	ls := e.leasesOf(t, "g")
	if l := ls[child]; l.Owner != "" || len(l.Parents) != 2 {
		t.Fatalf("child lease %+v: want unowned with two parents while a parent record is un-acked", l)
	}
	if ls["shardId-000000000000"].Checkpoint == checkpointShardEnd {
		t.Fatal("shard 0 reached SHARD_END with a record un-acked")
	}
	if n := count(); n != 40 {
		t.Fatalf("%d deliveries before the parent ended, want 40", n)
	}
	close(release)
	waitFor(t, 10*time.Second, "the child's 40 records", func() bool { return count() == 80 })
	mu.Lock()
	defer mu.Unlock()
	for i, d := range got {
		if (i < 40) != (d.shard != child) {
			t.Fatalf("delivery %d from %s: every parent record must come before the child's", i, d.shard)
		}
	}
	if l := e.leasesOf(t, "g")["shardId-000000000000"]; l.Checkpoint != checkpointShardEnd {
		t.Errorf("shard 0 lease %+v, want SHARD_END", l)
	}
}

// TestSplitShardChildrenLeasedAfterParentEnds: moto 5.2 keeps routing records to a split parent,
// so its children stay empty; this checks the lease side: the children get leases naming their
// parent, and are only taken once the parent is at SHARD_END.
func TestSplitShardChildrenLeasedAfterParentEnds(t *testing.T) {
	e := newEnv(t, 1)
	cfg := e.subConfig("g", "w")
	cfg.Kinesis = &shardEndKinesis{SubscriberClient: e.kin, stream: e.stream, shardOf: map[string]string{}}
	sub := e.subscriber(t, cfg)
	ch, err := sub.Subscribe(context.Background(), e.stream)
	if err != nil {
		t.Fatal(err)
	}
	c := newCollector()
	go c.consume(ch, nil)
	publishN(t, e.publisher(t), e.stream, "s", 20, 20)
	waitFor(t, 10*time.Second, "20 records", func() bool { return c.distinct() == 20 })
	ctx := context.Background()
	if _, err := e.kin.SplitShard(ctx, &kinesis.SplitShardInput{StreamName: aws.String(e.stream),
		ShardToSplit: aws.String("shardId-000000000000"), NewStartingHashKey: aws.String("170141183460469231731687303715884105728")}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "children leased", func() bool {
		ls := e.leasesOf(t, "g")
		return ls["shardId-000000000001"].Owner == "w#1" && ls["shardId-000000000002"].Owner == "w#1"
	})
	ls := e.leasesOf(t, "g")
	if ls["shardId-000000000000"].Checkpoint != checkpointShardEnd || ls["shardId-000000000000"].Owner != "" {
		t.Errorf("parent lease %+v, want SHARD_END and released", ls["shardId-000000000000"])
	}
	for _, id := range []string{"shardId-000000000001", "shardId-000000000002"} {
		if p := ls[id].Parents; len(p) != 1 || p[0] != "shardId-000000000000" {
			t.Errorf("child %s parents %v", id, p)
		}
	}
}
