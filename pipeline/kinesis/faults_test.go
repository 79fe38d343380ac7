package kinesis

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// faultyReads wraps the real client: some GetRecords calls fail with ExpiredIteratorException or
// ProvisionedThroughputExceededException instead of reaching moto.
type faultyReads struct {
	SubscriberClient
	calls, expired, throttled atomic.Int64
}

func (f *faultyReads) GetRecords(ctx context.Context, in *kinesis.GetRecordsInput, opts ...func(*kinesis.Options)) (*kinesis.GetRecordsOutput, error) {
	switch n := f.calls.Add(1); {
	case n%4 == 2:
		f.expired.Add(1)
		return nil, &types.ExpiredIteratorException{Message: aws.String("Iterator expired")}
	case n%5 == 3:
		f.throttled.Add(1)
		return nil, &types.ProvisionedThroughputExceededException{Message: aws.String("Rate exceeded for shard")}
	}
	return f.SubscriberClient.GetRecords(ctx, in, opts...)
}

// Expired iterators and throttling lose nothing and duplicate nothing: the iterator is re-got
// after the last record read.
func TestReadsSurviveExpiredIteratorsAndThrottling(t *testing.T) {
	e := newEnv(t, 2)
	faulty := &faultyReads{SubscriberClient: e.kin}
	cfg := e.subConfig("g", "w")
	cfg.Kinesis = faulty
	cfg.GetRecordsLimit = 25
	var lagCalls atomic.Int64
	cfg.OnLag = func(stream, shard string, ms int64) {
		if stream == e.stream && shard != "" && ms >= 0 {
			lagCalls.Add(1)
		}
	}
	sub := e.subscriber(t, cfg)
	ch, err := sub.Subscribe(context.Background(), e.stream)
	if err != nil {
		t.Fatal(err)
	}
	c := newCollector()
	go c.consume(ch, nil)
	pub := e.publisher(t)
	var sent []string
	for _, prefix := range []string{"a", "b", "c"} {
		sent = append(sent, publishN(t, pub, e.stream, prefix, 100, 13)...)
		time.Sleep(100 * time.Millisecond)
	}
	waitFor(t, 20*time.Second, "300 records", func() bool { return c.distinct() == len(sent) })
	for _, p := range sent {
		if n := c.count(p); n != 1 {
			t.Errorf("%s delivered %d times, want once", p, n)
		}
	}
	if faulty.expired.Load() == 0 || faulty.throttled.Load() == 0 {
		t.Fatalf("faults not exercised: %d expired, %d throttled", faulty.expired.Load(), faulty.throttled.Load())
	}
	if lagCalls.Load() == 0 || len(sub.Lag()) != 2 {
		t.Errorf("lag not reported: %d callbacks, Lag() = %v", lagCalls.Load(), sub.Lag())
	}
}

// LATEST skips what was in the stream before the group's first read, and the start point is
// pinned in the lease: a worker dying before any checkpoint does not make its successor skip the
// records that arrived in between (a plain LATEST again would).
func TestStartAtLatest(t *testing.T) {
	e := newEnv(t, 1)
	pub := e.publisher(t)
	publishN(t, pub, e.stream, "old", 10, 3)
	cfg := e.subConfig("g", "w1")
	cfg.StartPosition = StartLatest
	first := e.subscriber(t, cfg)
	if _, err := first.Subscribe(context.Background(), e.stream); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the LATEST start to be pinned", func() bool { return e.leasesOf(t, "g")["shardId-000000000000"].StartAt != "" })
	first.abandon() // dies before reading or checkpointing anything
	time.Sleep(50 * time.Millisecond)
	publishN(t, pub, e.stream, "mid", 5, 3)

	cfg.WorkerID = "w2"
	second := e.subscriber(t, cfg)
	ch, err := second.Subscribe(context.Background(), e.stream)
	if err != nil {
		t.Fatal(err)
	}
	c := newCollector()
	go c.consume(ch, nil)
	waitFor(t, 10*time.Second, "the 5 records published after the pinned start", func() bool { return c.distinct() == 5 })
	time.Sleep(200 * time.Millisecond)
	for i := range 10 {
		if n := c.count(fmt.Sprintf("old-%d", i)); n != 0 {
			t.Fatalf("record old-%d from before the start delivered", i)
		}
	}
}

// Close waits for every goroutine it started: after it, the goroutine count is back to where it
// was (SDK connection goroutines aside, which belong to the HTTP client and idle out).
func TestCloseLeavesNoGoroutines(t *testing.T) {
	e := newEnv(t, 4)
	publishN(t, e.publisher(t), e.stream, "x", 100, 10)
	// Clients on a transport of our own, so its idle connections can be closed at the end.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	cfg := e.cfg.Copy()
	cfg.HTTPClient = &http.Client{Transport: tr}
	kin, ddb := kinesis.NewFromConfig(cfg), dynamodb.NewFromConfig(cfg)
	before := runtime.NumGoroutine()
	subs := make([]*Subscriber, 3)
	var wg sync.WaitGroup
	for i := range subs {
		scfg := e.subConfig("g", "w"+string(rune('a'+i)))
		scfg.Kinesis, scfg.DynamoDB = kin, ddb
		s, err := NewSubscriber(scfg)
		if err != nil {
			t.Fatal(err)
		}
		subs[i] = s
		ch, err := s.Subscribe(context.Background(), e.stream)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for m := range ch {
				m.Ack()
			}
		}()
	}
	time.Sleep(time.Second)
	for _, s := range subs {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	tr.CloseIdleConnections()
	waitFor(t, 5*time.Second, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}

func TestSubscribeToMissingStreamFails(t *testing.T) {
	e := newEnv(t, 1)
	sub := e.subscriber(t, e.subConfig("g", "w"))
	_, err := sub.Subscribe(context.Background(), "no-such-stream")
	var rnf *types.ResourceNotFoundException
	if !errors.As(err, &rnf) || !strings.Contains(err.Error(), "no-such-stream") {
		t.Fatalf("err = %v, want ResourceNotFoundException naming the stream", err)
	}
}

func TestSubscribeWithoutLeaseTableFails(t *testing.T) {
	e := newEnv(t, 1)
	cfg := e.subConfig("g", "w")
	cfg.LeaseTable = "no-such-table"
	sub := e.subscriber(t, cfg)
	_, err := sub.Subscribe(context.Background(), e.stream)
	if err == nil || !strings.Contains(err.Error(), "no-such-table") || !strings.Contains(err.Error(), "CreateLeaseTable") {
		t.Fatalf("err = %v, want an error naming the table and CreateLeaseTable", err)
	}
}
