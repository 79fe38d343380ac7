package provisioning

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
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
	"github.com/thingpipe/thingpipe/internal/awstest"
	"github.com/thingpipe/thingpipe/workers/eventsns"
	"github.com/thingpipe/thingpipe/workers/internal/awsfixture"
)

func TestMain(m *testing.M) { os.Exit(awstest.Main(m)) }

type env struct {
	cfg   aws.Config
	table string
	topic *awsfixture.Topic
	pub   *eventsns.Publisher
}

func setup(t *testing.T) env {
	cfg := awstest.Config(t)
	awsfixture.SerializeDynamoDB(&cfg) // moto applies conditional writes non-atomically otherwise
	table := awstest.Name(t, "thingpipe-devices")
	awsfixture.Table(t, cfg, table, "thingName")
	topic := awsfixture.NewTopic(t, cfg, awstest.Name(t, "thingpipe-events"))
	pub, err := eventsns.New(sns.NewFromConfig(cfg), topic.ARN)
	if err != nil {
		t.Fatal(err)
	}
	return env{cfg: cfg, table: table, topic: topic, pub: pub}
}

func (e env) stage(t *testing.T, pub EventPublisher, lease time.Duration) *Stage {
	return e.stageClock(t, pub, lease, time.Now)
}

func (e env) stageClock(t *testing.T, pub EventPublisher, lease time.Duration, now func() time.Time) *Stage {
	t.Helper()
	s, err := New(Config{DevicesTable: e.table, NotifyLease: lease, Now: now}, NewDynamoStore(dynamodb.NewFromConfig(e.cfg), e.table), pub)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func registryJSON(thing string, ms int64) []byte {
	b, _ := json.Marshal(map[string]any{"eventType": "THING_EVENT", "eventId": uuid.NewString(), "timestamp": ms, "operation": "CREATED",
		"accountId": awstest.AccountID, "thingId": "id-" + thing, "thingName": thing, "versionNumber": 1,
		"attributes": map[string]string{"mac": "00:11:22:33:44:55", "region": "eu"}})
	return b
}

func connectedJSON(thing string, ms int64) []byte {
	b, _ := json.Marshal(map[string]any{"clientId": thing, "timestamp": ms, "eventType": "connected",
		"sessionIdentifier": uuid.NewString(), "principalIdentifier": "abc", "ipAddress": "192.0.2.1", "versionNumber": 0})
	return b
}

// deliver hands payload to the handler like an SQS subscriber would: redelivering on a retryable
// error, until it is acked, dead-lettered (permanent) or the test gives up.
func deliver(t *testing.T, s *Stage, payload []byte) error {
	t.Helper()
	for attempt := 0; attempt < 200; attempt++ {
		msg := message.NewMessage(uuid.NewString(), payload)
		err := s.Handle(msg)
		if err == nil || events.IsPermanent(err) {
			return err
		}
		if !errors.Is(err, ErrNotifying) {
			t.Logf("retrying after: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("message never acked: %s", payload)
	return nil
}

func activations(t *testing.T, tp *awsfixture.Topic, want int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for _, n := range tp.Expect(t, want, 10*time.Second, 500*time.Millisecond) {
		env, err := events.DecodeEnvelope([]byte(n.Message))
		if err != nil {
			t.Fatalf("published message is not an envelope: %v", err)
		}
		if env.Type != events.TypeDeviceActivated || n.Attr("type") != env.Type || n.Attr("thingName") != env.ThingName {
			t.Fatalf("unexpected notification %s", n)
		}
		if env.ID != ActivationEventID(env.ThingName) {
			t.Errorf("event id %s is not the deterministic one", env.ID)
		}
		got[env.ThingName]++
		if got[env.ThingName] > 1 {
			t.Logf("duplicate for %s: sns message id %s", env.ThingName, n.MessageID)
		}
	}
	return got
}

func TestActivationEitherOrderAndReplays(t *testing.T) {
	e := setup(t)
	s := e.stage(t, e.pub, 5*time.Second)
	// dev-a: created then connected; dev-b: connected before created; both replayed.
	seq := [][]byte{
		registryJSON("dev-a", 1000), connectedJSON("dev-b", 1000), connectedJSON("dev-a", 2000),
		registryJSON("dev-b", 3000), registryJSON("dev-a", 1000), connectedJSON("dev-b", 1000), connectedJSON("dev-a", 2000),
		registryJSON("dev-c", 5000), registryJSON("dev-c", 5000),
	}
	for _, p := range seq {
		if err := deliver(t, s, p); err != nil {
			t.Fatal(err)
		}
	}
	got := activations(t, e.topic, 2)
	if got["dev-a"] != 1 || got["dev-b"] != 1 || len(got) != 2 {
		t.Errorf("device.activated per thing = %v, want dev-a:1 dev-b:1", got)
	}
	store := NewDynamoStore(dynamodb.NewFromConfig(e.cfg), e.table)
	for thing, want := range map[string]State{"dev-a": StateActive, "dev-b": StateActive, "dev-c": StateRegistered} {
		d, found, err := store.Get(context.Background(), thing)
		if err != nil || !found {
			t.Fatalf("%s: %v %v", thing, found, err)
		}
		if d.State != want || (want == StateActive) != d.Activation.Notified {
			t.Errorf("%s: %+v, want state %s", thing, d, want)
		}
	}
	// Replays long after: still nothing.
	for _, p := range seq {
		if err := deliver(t, s, p); err != nil {
			t.Fatal(err)
		}
	}
	if got := activations(t, e.topic, 0); len(got) != 0 {
		t.Errorf("replays published %v", got)
	}
}

func TestBadPayloadIsPermanent(t *testing.T) {
	e := setup(t)
	s := e.stage(t, e.pub, 5*time.Second)
	for _, p := range []string{`not json`, `{"eventType":"THING_EVENT","operation":"CREATED","thingName":"a/b","timestamp":1}`, `{"eventType":"connected","clientId":"x"}`} {
		err := s.Handle(message.NewMessage(uuid.NewString(), []byte(p)))
		if !events.IsPermanent(err) {
			t.Errorf("%s: want permanent error, got %v", p, err)
		}
	}
}

func TestTwoConcurrentWorkers(t *testing.T) {
	e := setup(t)
	counting := &countingPublisher{next: e.pub, calls: map[string]int{}}
	workers := []*Stage{e.stage(t, counting, 5*time.Second), e.stage(t, counting, 5*time.Second)}
	const things = 15
	var payloads [][]byte
	for i := range things {
		thing := fmt.Sprintf("dev-%02d", i)
		for r := 0; r < 3; r++ { // every event delivered three times
			payloads = append(payloads, registryJSON(thing, 1000), connectedJSON(thing, 1000+int64(r)))
		}
	}
	rand.Shuffle(len(payloads), func(i, j int) { payloads[i], payloads[j] = payloads[j], payloads[i] })
	var wg sync.WaitGroup
	var next atomic.Int64
	for g := range 6 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(payloads) {
					return
				}
				if err := deliver(t, workers[(g+i)%2], payloads[i]); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	got := activations(t, e.topic, things)
	if len(got) != things {
		t.Errorf("activated %d things, want %d: %v", len(got), things, got)
	}
	for thing, n := range got {
		if n != 1 {
			t.Errorf("%s: %d device.activated events, want 1 (Publish called %d times)", thing, n, counting.get(thing))
		}
	}
}

// crashingPublisher fails its first n calls, as a worker crashing between its write and its emit.
type crashingPublisher struct {
	next  EventPublisher
	fails atomic.Int64
}

func (c *crashingPublisher) Publish(ctx context.Context, env events.Envelope) error {
	if c.fails.Add(-1) >= 0 {
		return errors.New("crashed before publishing")
	}
	return c.next.Publish(ctx, env)
}

func TestRedeliveryAfterCrashBetweenWriteAndEmitStillEmits(t *testing.T) {
	e := setup(t)
	// A long lease, so a slow moto never expires a live claim; the test moves worker b's clock past it.
	lease := 30 * time.Second
	var skew atomic.Int64
	clock := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	crashy := &crashingPublisher{next: e.pub}
	crashy.fails.Store(1)
	a := e.stage(t, crashy, lease)
	if err := a.Handle(message.NewMessage("1", registryJSON("dev-x", 1000))); err != nil {
		t.Fatal(err)
	}
	err := a.Handle(message.NewMessage("2", connectedJSON("dev-x", 2000)))
	if err == nil || events.IsPermanent(err) {
		t.Fatalf("crash must be retryable, got %v", err)
	}
	// The device is ACTIVE in the table, the event owed.
	d, _, _ := NewDynamoStore(dynamodb.NewFromConfig(e.cfg), e.table).Get(context.Background(), "dev-x")
	if d.State != StateActive || !d.Activation.Pending() {
		t.Fatalf("after the crash: %+v", d)
	}
	// Another worker's redelivery while the dead worker's claim is live backs off, then emits.
	b := e.stageClock(t, e.pub, lease, clock)
	if err := b.Handle(message.NewMessage("3", connectedJSON("dev-x", 2000))); !errors.Is(err, ErrNotifying) {
		t.Errorf("redelivery during the dead claim: %v, want ErrNotifying", err)
	}
	skew.Store(int64(lease + time.Second)) // the dead worker's lease runs out
	if err := deliver(t, b, connectedJSON("dev-x", 2000)); err != nil {
		t.Fatal(err)
	}
	if got := activations(t, e.topic, 1); got["dev-x"] != 1 || len(got) != 1 {
		t.Errorf("activations after crash = %v, want dev-x:1", got)
	}
}

type countingPublisher struct {
	next  EventPublisher
	mu    sync.Mutex
	calls map[string]int
}

func (c *countingPublisher) Publish(ctx context.Context, env events.Envelope) error {
	c.mu.Lock()
	c.calls[env.ThingName]++
	c.mu.Unlock()
	return c.next.Publish(ctx, env)
}

func (c *countingPublisher) get(thing string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[thing]
}
