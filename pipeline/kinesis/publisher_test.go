package kinesis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// flakyKinesis wraps the real client and makes PutRecords fail the way Kinesis does under load:
// whole calls throttled, and per-entry ProvisionedThroughputExceededException for some entries
// (which are then not written; the rest go to moto).
type flakyKinesis struct {
	PublisherClient
	mu        sync.Mutex
	calls     int
	throttle  func(call int) bool
	failEntry func(call int, data []byte) bool
}

func (f *flakyKinesis) PutRecords(ctx context.Context, in *kinesis.PutRecordsInput, opts ...func(*kinesis.Options)) (*kinesis.PutRecordsOutput, error) {
	f.mu.Lock()
	f.calls++
	call := f.calls
	f.mu.Unlock()
	if f.throttle != nil && f.throttle(call) {
		return nil, &types.ProvisionedThroughputExceededException{Message: aws.String("Rate exceeded for stream")}
	}
	results := make([]types.PutRecordsResultEntry, len(in.Records))
	var pass []types.PutRecordsRequestEntry
	var passIdx []int
	failed := int32(0)
	for i, r := range in.Records {
		if f.failEntry != nil && f.failEntry(call, r.Data) {
			results[i] = types.PutRecordsResultEntry{ErrorCode: aws.String("ProvisionedThroughputExceededException"), ErrorMessage: aws.String("Rate exceeded for shard")}
			failed++
			continue
		}
		pass = append(pass, r)
		passIdx = append(passIdx, i)
	}
	if len(pass) > 0 {
		out, err := f.PublisherClient.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: in.StreamName, Records: pass}, opts...)
		if err != nil {
			return nil, err
		}
		for j, r := range out.Records {
			results[passIdx[j]] = r
		}
	}
	return &kinesis.PutRecordsOutput{FailedRecordCount: aws.Int32(failed), Records: results}, nil
}

func TestPublisherRetriesPartialFailures(t *testing.T) {
	e := newEnv(t, 2)
	// Call 1 is throttled; on calls 2 and 3 every entry whose payload ends in 3 or 7 fails.
	flaky := &flakyKinesis{
		PublisherClient: e.kin,
		throttle:        func(call int) bool { return call == 1 },
		failEntry: func(call int, data []byte) bool {
			return call <= 3 && (data[len(data)-1] == '3' || data[len(data)-1] == '7')
		},
	}
	pub, err := NewPublisher(PublisherConfig{Client: flaky, Logger: quietLogger(), RetryBaseDelay: 1, RetryMaxDelay: 1})
	if err != nil {
		t.Fatal(err)
	}
	sent := publishN(t, pub, e.stream, "p", 400, 31)
	if flaky.calls != 4 {
		t.Errorf("PutRecords calls = %d, want 4 (throttled, partial, partial, rest)", flaky.calls)
	}

	c := newCollector()
	sub := e.subscriber(t, e.subConfig("g", "w"))
	ch, err := sub.Subscribe(context.Background(), e.stream)
	if err != nil {
		t.Fatal(err)
	}
	go c.consume(ch, nil)
	waitFor(t, 10e9, "400 records", func() bool { return c.distinct() == len(sent) })
	for _, p := range sent {
		if n := c.count(p); n != 1 {
			t.Errorf("%s delivered %d times, want exactly once (failed entries must be retried, written ones not)", p, n)
		}
	}
}

func TestPublisherGivesUpWithClearError(t *testing.T) {
	e := newEnv(t, 1)
	flaky := &flakyKinesis{PublisherClient: e.kin, failEntry: func(_ int, data []byte) bool { return strings.HasSuffix(string(data), "-1") }}
	pub, err := NewPublisher(PublisherConfig{Client: flaky, Logger: quietLogger(), MaxAttempts: 3, RetryBaseDelay: 1, RetryMaxDelay: 1})
	if err != nil {
		t.Fatal(err)
	}
	msgs := []*message.Message{message.NewMessage("a", []byte("x-0")), message.NewMessage("b", []byte("x-1"))}
	err = pub.Publish(e.stream, msgs...)
	var pe *PublishError
	if !errors.As(err, &pe) {
		t.Fatalf("err = %v, want *PublishError", err)
	}
	if pe.Failed != 1 || pe.Attempts != 3 || pe.ErrorCode != "ProvisionedThroughputExceededException" || pe.Stream != e.stream {
		t.Errorf("PublishError %+v", pe)
	}
	if !strings.Contains(err.Error(), "1 records not written after 3 attempts") {
		t.Errorf("message %q", err)
	}
}

func TestPublisherRejectsBadInput(t *testing.T) {
	e := newEnv(t, 1)
	pub := e.publisher(t)
	big := message.NewMessage("big", make([]byte, maxBytesPerRecord))
	var tooLarge *RecordTooLargeError
	if err := pub.Publish(e.stream, big); !errors.As(err, &tooLarge) || tooLarge.UUID != "big" {
		t.Errorf("1 MiB payload: err = %v, want *RecordTooLargeError naming the message", err)
	}
	long := message.NewMessage("long", []byte("x"))
	long.Metadata.Set(MetadataPartitionKey, strings.Repeat("k", 257))
	if err := pub.Publish(e.stream, long); err == nil || !strings.Contains(err.Error(), "partition key") {
		t.Errorf("long partition key: err = %v", err)
	}
	var ce *ConfigError
	if err := pub.Publish("", long); !errors.As(err, &ce) || ce.Field != "topic" {
		t.Errorf("empty topic: err = %v", err)
	}
	_ = pub.Close()
	if err := pub.Publish(e.stream, message.NewMessage("late", []byte("x"))); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: err = %v, want ErrClosed", err)
	}
}

// Big batches are split at 500 records and at 5 MiB.
func TestPublisherBatchLimits(t *testing.T) {
	e := newEnv(t, 1)
	counting := &flakyKinesis{PublisherClient: e.kin}
	pub, err := NewPublisher(PublisherConfig{Client: counting, Logger: quietLogger(), RawPayload: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		n, size, calls int
	}{
		{1200, 10, 3},        // 500 + 500 + 200
		{12, 1000 * 1000, 3}, // 5 + 5 + 2 records of ~1 MB
		{500, 10 * 1000, 1},  // 5 MB in one call
	} {
		counting.calls = 0
		msgs := make([]*message.Message, tc.n)
		for i := range msgs {
			msgs[i] = message.NewMessage(fmt.Sprint(i), make([]byte, tc.size))
		}
		if err := pub.Publish(e.stream, msgs...); err != nil {
			t.Fatalf("%d x %d bytes: %v", tc.n, tc.size, err)
		}
		if counting.calls != tc.calls {
			t.Errorf("%d x %d bytes: %d PutRecords calls, want %d", tc.n, tc.size, counting.calls, tc.calls)
		}
	}
}

// slowKinesis delays every PutRecords, so concurrent Publish calls pile up behind it.
type slowKinesis struct {
	PublisherClient
	delay time.Duration
	calls atomic.Int64
}

func (s *slowKinesis) PutRecords(ctx context.Context, in *kinesis.PutRecordsInput, opts ...func(*kinesis.Options)) (*kinesis.PutRecordsOutput, error) {
	s.calls.Add(1)
	time.Sleep(s.delay)
	return s.PublisherClient.PutRecords(ctx, in, opts...)
}

// Concurrent single-message Publish calls share PutRecords calls, each returns only once its own
// record is written, and a failure is reported only to the caller whose record failed.
func TestPublisherGroupCommit(t *testing.T) {
	e := newEnv(t, 2)
	flaky := &flakyKinesis{PublisherClient: e.kin, failEntry: func(_ int, data []byte) bool { return strings.HasSuffix(string(data), "poison") }}
	slow := &slowKinesis{PublisherClient: flaky, delay: 20 * time.Millisecond}
	pub, err := NewPublisher(PublisherConfig{Client: slow, Logger: quietLogger(), MaxAttempts: 2, RetryBaseDelay: 1, RetryMaxDelay: 1})
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			payload := fmt.Sprintf("g-%d", i)
			if i == 77 {
				payload = "g-77-poison"
			}
			errs[i] = pub.Publish(e.stream, message.NewMessage(fmt.Sprint(i), []byte(payload)))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		var pe *PublishError
		if i == 77 {
			if !errors.As(err, &pe) || pe.Failed != 1 {
				t.Errorf("poison publish: err = %v, want a PublishError for 1 record", err)
			}
		} else if err != nil {
			t.Errorf("publish %d: %v", i, err)
		}
	}
	if calls := slow.calls.Load(); calls >= n/4 {
		t.Errorf("%d PutRecords calls for %d concurrent publishes: not group-committed", calls, n)
	}
	c := newCollector()
	sub := e.subscriber(t, e.subConfig("g", "w"))
	ch, err := sub.Subscribe(context.Background(), e.stream)
	if err != nil {
		t.Fatal(err)
	}
	go c.consume(ch, nil)
	waitFor(t, 10*time.Second, "199 records", func() bool { return c.distinct() == n-1 })
	time.Sleep(200 * time.Millisecond)
	if c.count("g-77-poison") != 0 || c.distinct() != n-1 {
		t.Errorf("got %d distinct records, poison %d times", c.distinct(), c.count("g-77-poison"))
	}
}
