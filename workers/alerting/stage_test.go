package alerting

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/google/uuid"

	"github.com/thingpipe/thingpipe/events"
	"github.com/thingpipe/thingpipe/internal/apicalls"
	"github.com/thingpipe/thingpipe/internal/awstest"
	tpkinesis "github.com/thingpipe/thingpipe/pipeline/kinesis"
	"github.com/thingpipe/thingpipe/workers/eventsns"
	"github.com/thingpipe/thingpipe/workers/internal/awsfixture"
)

func TestMain(m *testing.M) { os.Exit(awstest.Main(m)) }

type env struct {
	cfg    aws.Config
	calls  *apicalls.Counter
	table  string
	alerts *awsfixture.Topic
	events *awsfixture.Topic
}

func setup(t *testing.T) env {
	cfg := awstest.Config(t)
	awsfixture.SerializeDynamoDB(&cfg) // moto applies conditional writes non-atomically otherwise
	calls := apicalls.New()
	calls.Instrument(&cfg)
	e := env{cfg: cfg, calls: calls, table: awstest.Name(t, "thingpipe-alerts")}
	awsfixture.Table(t, cfg, e.table, "alertKey")
	e.alerts = awsfixture.NewTopic(t, cfg, awstest.Name(t, "thingpipe-alerts"))
	e.events = awsfixture.NewTopic(t, cfg, awstest.Name(t, "thingpipe-events"))
	return e
}

// stage builds one worker with its own clients, as a separate process would have.
func (e env) stage(t *testing.T, policies []Policy, lease time.Duration, wrap func(Notifier) Notifier) *Stage {
	return e.stageTTL(t, policies, lease, wrap, 0)
}

func (e env) stageTTL(t *testing.T, policies []Policy, lease time.Duration, wrap func(Notifier) Notifier, ttl time.Duration) *Stage {
	return e.stageFull(t, policies, lease, wrap, ttl, time.Now)
}

func (e env) stageFull(t *testing.T, policies []Policy, lease time.Duration, wrap func(Notifier) Notifier, ttl time.Duration, now func() time.Time) *Stage {
	t.Helper()
	snsc := sns.NewFromConfig(e.cfg)
	var n Notifier
	n, err := NewSNSNotifier(snsc, e.alerts.ARN)
	if err != nil {
		t.Fatal(err)
	}
	if wrap != nil {
		n = wrap(n)
	}
	pub, err := eventsns.New(snsc, e.events.ARN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{AlertsTable: e.table, Policies: policies, NotifyLease: lease, StateCacheTTL: ttl, Now: now}, NewDynamoStore(dynamodb.NewFromConfig(e.cfg), e.table), n, pub)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var (
	seqBase  = "49590338271490256608559692538361571095921575989136588800"
	arrival0 = time.Date(2026, 11, 23, 14, 0, 0, 0, time.UTC)
)

func reading(thing string, i int, payload string) *message.Message {
	m := message.NewMessage(uuid.NewString(), []byte(payload))
	m.Metadata.Set(tpkinesis.MetadataPartitionKey, thing)
	m.Metadata.Set(tpkinesis.MetadataShardID, "shardId-000000000000")
	m.Metadata.Set(tpkinesis.MetadataSequenceNumber, fmt.Sprintf("%s%06d", seqBase[:len(seqBase)-6], i))
	m.Metadata.Set(tpkinesis.MetadataArrivalTime, arrival0.Add(time.Duration(i)*10*time.Millisecond).Format(time.RFC3339Nano))
	return m
}

// deliver redelivers a message until it is acked or dead-lettered, like the Kinesis subscriber.
func deliver(t *testing.T, s *Stage, m *message.Message) error {
	for range 300 {
		err := s.Handle(m.Copy())
		if err == nil || events.IsPermanent(err) {
			return err
		}
		if !errors.Is(err, ErrNotifying) {
			t.Logf("retrying after: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("message %s never acked", m.Payload)
	return nil
}

// storm delivers msgs through workers with 8 concurrent handlers, in stream order.
func storm(t *testing.T, workers []*Stage, msgs []*message.Message) {
	var wg sync.WaitGroup
	var next atomic.Int64
	for g := range 8 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(msgs) {
					return
				}
				if err := deliver(t, workers[(g+i)%len(workers)], msgs[i]); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
}

func TestAlertStormGivesOneFiringAndOneResolved(t *testing.T) {
	t.Run("1000 readings, state cache", func(t *testing.T) { testStorm(t, 1000, 0) })
	// Without the cache every reading reads and races on the item: the conditional writes alone
	// must keep it to one email each.
	t.Run("300 readings, no cache", func(t *testing.T) { testStorm(t, 300, -1) })
}

func testStorm(t *testing.T, hot int, ttl time.Duration) {
	e := setup(t)
	workers := []*Stage{e.stageTTL(t, nil, 5*time.Second, nil, ttl), e.stageTTL(t, nil, 5*time.Second, nil, ttl)}
	var msgs []*message.Message
	for i := range hot {
		msgs = append(msgs, reading("dev-42", i, fmt.Sprintf(`{"temperature":%.1f}`, 93+float64(i%10)/10)))
	}
	storm(t, workers, msgs)
	fired := e.alerts.Expect(t, 1, 10*time.Second, 500*time.Millisecond)
	if len(fired) != 1 {
		t.Fatalf("%d FIRING notifications, want exactly 1: %v", len(fired), fired)
	}
	n := fired[0]
	if n.Subject[:len("[CRITICAL] temperature 93")] != "[CRITICAL] temperature 93" || n.Attr("severity") != "critical" ||
		n.Attr("thingName") != "dev-42" || n.Attr("policy") != "overheating" || n.Attr("status") != "FIRING" {
		t.Errorf("notification %s", n)
	}
	var cool []*message.Message
	for i := hot; i < hot+200; i++ {
		cool = append(cool, reading("dev-42", i, `{"temperature":70}`))
	}
	storm(t, workers, cool)
	resolved := e.alerts.Expect(t, 1, 10*time.Second, 500*time.Millisecond)
	if len(resolved) != 1 || resolved[0].Attr("status") != "RESOLVED" || resolved[0].Subject != "[RESOLVED] temperature 70 < 75 on dev-42" {
		t.Fatalf("RESOLVED notifications: %v", resolved)
	}
	evs := map[string]int{}
	for _, n := range e.events.Expect(t, 2, 10*time.Second, 300*time.Millisecond) {
		env, err := events.DecodeEnvelope([]byte(n.Message))
		if err != nil {
			t.Fatal(err)
		}
		evs[env.Type]++
	}
	if evs[events.TypeAlertFiring] != 1 || evs[events.TypeAlertResolved] != 1 || len(evs) != 2 {
		t.Errorf("outcome events %v", evs)
	}
	t.Logf("API calls for %d readings: %v", hot+200, e.calls.Snapshot())
	if got := e.calls.Get("SNS", "PublishBatch"); got != 2 {
		t.Errorf("PublishBatch calls = %d, want 2", got)
	}
	if reads := e.calls.Get("DynamoDB", "GetItem"); ttl >= 0 && reads > int64(hot+200)/4 {
		t.Errorf("%d DynamoDB reads for %d readings: the state cache is not skipping no-op readings", reads, hot+200)
	}
}

func TestAlertsDueTogetherGoInOneBatch(t *testing.T) {
	e := setup(t)
	ps := DefaultPolicies()
	ps[0].Consecutive = 1
	s := e.stage(t, ps, 2*time.Second, nil)
	before := e.calls.Get("SNS", "PublishBatch")
	if err := deliver(t, s, reading("dev-7", 1, `{"temperature":99,"battery":3}`)); err != nil {
		t.Fatal(err)
	}
	if got := e.calls.Get("SNS", "PublishBatch") - before; got != 1 {
		t.Errorf("PublishBatch calls = %d, want 1 for two alerts", got)
	}
	got := map[string]string{}
	for _, n := range e.alerts.Expect(t, 2, 10*time.Second, 400*time.Millisecond) {
		got[n.Attr("policy")] = n.Subject
	}
	want := map[string]string{"overheating": "[CRITICAL] temperature 99 > 80 on dev-7", "low-battery": "[WARNING] battery 3 < 15 on dev-7"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("notifications %v, want %v", got, want)
	}
	e.events.Drain(t, 100*time.Millisecond)
}

// crashingNotifier dies (panics) in its first n calls before sending: a worker process killed after
// it claimed the FIRING notice, before the email. Nothing after the send runs, as in a real crash.
type crashingNotifier struct {
	next  Notifier
	fails atomic.Int64
}

func (c *crashingNotifier) Notify(ctx context.Context, ns []Notification) []error {
	if c.fails.Add(-1) >= 0 {
		panic("crashed")
	}
	return c.next.Notify(ctx, ns)
}

// crashed runs h and reports whether it panicked.
func crashed(h func() error) (died bool, err error) {
	defer func() {
		if recover() != nil {
			died = true
		}
	}()
	return false, h()
}

func TestCrashBeforeNotifyStillNotifiesOnce(t *testing.T) {
	e := setup(t)
	ps := DefaultPolicies()[:1]
	// A long lease, so a slow moto never expires a live claim; the test moves worker b's clock past it.
	lease := 30 * time.Second
	var skew atomic.Int64
	clock := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	a := e.stage(t, ps, lease, func(n Notifier) Notifier { c := &crashingNotifier{next: n}; c.fails.Store(1); return c })
	b := e.stageFull(t, ps, lease, nil, 0, clock)
	var msgs []*message.Message
	for i := range 3 {
		msgs = append(msgs, reading("dev-9", i, `{"temperature":90}`))
	}
	for _, m := range msgs[:2] {
		if err := a.Handle(m); err != nil {
			t.Fatal(err)
		}
	}
	if died, err := crashed(func() error { return a.Handle(msgs[2]) }); !died {
		t.Fatalf("worker a did not crash: %v", err)
	}
	st, _, _ := NewDynamoStore(dynamodb.NewFromConfig(e.cfg), e.table).Get(context.Background(), Key("dev-9", "overheating"))
	if st.Status != StatusFiring || !st.Firing.Pending() {
		t.Fatalf("state after the crash: %+v", st)
	}
	// The redelivered reading (a replay: not counted again) goes to the other worker; it backs off
	// while the dead worker's claim lasts, then takes it over and sends.
	if err := b.Handle(msgs[2].Copy()); !errors.Is(err, ErrNotifying) {
		t.Errorf("redelivery during the dead claim: %v, want ErrNotifying", err)
	}
	skew.Store(int64(lease + time.Second))
	if err := deliver(t, b, msgs[2]); err != nil {
		t.Fatal(err)
	}
	// More hot readings and replays change nothing.
	for i := 3; i < 10; i++ {
		if err := deliver(t, b, reading("dev-9", i, `{"temperature":91}`)); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.alerts.Expect(t, 1, 10*time.Second, 400*time.Millisecond); len(got) != 1 {
		t.Fatalf("%d notifications, want 1: %v", len(got), got)
	}
	e.events.Drain(t, 100*time.Millisecond)
}

func TestBadTelemetry(t *testing.T) {
	e := setup(t)
	s := e.stage(t, nil, time.Second, nil)
	noKey := message.NewMessage("x", []byte(`{"temperature":1}`))
	tests := map[string]*message.Message{
		"not JSON":         reading("dev-1", 1, `nope`),
		"string metric":    reading("dev-1", 2, `{"temperature":"NaN"}`),
		"bad thing name":   reading("dev/1", 3, `{"temperature":1}`),
		"no partition key": noKey,
		"huge number":      reading("dev-1", 4, `{"temperature":1e999}`),
	}
	for name, m := range tests {
		if err := s.Handle(m); !events.IsPermanent(err) {
			t.Errorf("%s: want a permanent error, got %v", name, err)
		}
	}
	if err := s.Handle(reading("dev-1", 5, `{"humidity":40}`)); err != nil {
		t.Errorf("reading without policy metrics: %v", err)
	}
}

func TestManyDevicesFiringTogetherShareBatches(t *testing.T) {
	e := setup(t)
	ps := DefaultPolicies()
	ps[0].Consecutive = 1
	var batching *BatchingNotifier
	s := e.stage(t, ps, 30*time.Second, func(n Notifier) Notifier {
		batching = NewBatchingNotifier(n, 100*time.Millisecond, 10*time.Second)
		return batching
	})
	defer batching.Close()
	var msgs []*message.Message
	for i := range 30 {
		msgs = append(msgs, reading(fmt.Sprintf("dev-%02d", i), i, `{"temperature":99}`))
	}
	before := e.calls.Get("SNS", "PublishBatch")
	storm(t, []*Stage{s}, msgs)
	got := e.alerts.Expect(t, 30, 10*time.Second, 500*time.Millisecond)
	things := map[string]bool{}
	for _, n := range got {
		things[n.Attr("thingName")] = true
	}
	if len(got) != 30 || len(things) != 30 {
		t.Fatalf("%d notifications for %d things, want 30 each", len(got), len(things))
	}
	calls := e.calls.Get("SNS", "PublishBatch") - before
	t.Logf("30 alerts in %d PublishBatch calls", calls)
	if calls >= 30 || calls < 3 {
		t.Errorf("%d PublishBatch calls for 30 alerts from 8 concurrent handlers: not batched", calls)
	}
	e.events.Drain(t, 100*time.Millisecond)
}
