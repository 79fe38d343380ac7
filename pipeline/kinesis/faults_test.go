package kinesis

import (
	"context"
	"net/http"
	"runtime"
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

// LATEST skips what was in the stream before the group's first read.
func TestStartAtLatest(t *testing.T) {
	e := newEnv(t, 1)
	pub := e.publisher(t)
	publishN(t, pub, e.stream, "old", 10, 3)
	cfg := e.subConfig("g", "w")
	cfg.StartPosition = StartLatest
	sub := e.subscriber(t, cfg)
	ch, err := sub.Subscribe(context.Background(), e.stream)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the shard to be leased", func() bool { return e.leasesOf(t, "g")["shardId-000000000000"].Owner == "w#1" })
	time.Sleep(200 * time.Millisecond) // let the first GetShardIterator(LATEST) happen
	publishN(t, pub, e.stream, "new", 5, 3)
	c := newCollector()
	go c.consume(ch, nil)
	waitFor(t, 5*time.Second, "5 new records", func() bool { return c.distinct() == 5 })
	for i := range 10 {
		if c.count("old-"+string(rune('0'+i))) != 0 {
			t.Fatalf("record old-%d from before LATEST delivered", i)
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
