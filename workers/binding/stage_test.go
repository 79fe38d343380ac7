package binding

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/google/uuid"

	"github.com/thingpipe/thingpipe/events"
	"github.com/thingpipe/thingpipe/internal/awstest"
	tpsqs "github.com/thingpipe/thingpipe/pipeline/sqs"
	"github.com/thingpipe/thingpipe/workers/eventsns"
	"github.com/thingpipe/thingpipe/workers/internal/awsfixture"
	"github.com/thingpipe/thingpipe/workers/provisioning"
)

func TestMain(m *testing.M) { os.Exit(awstest.Main(m)) }

type env struct {
	cfg      aws.Config
	bindings string
	devices  string
	topic    *awsfixture.Topic
	pub      *eventsns.Publisher
	store    *DynamoStore
	prov     *provisioning.Stage
}

func setup(t *testing.T) env {
	cfg := awstest.Config(t)
	awsfixture.SerializeDynamoDB(&cfg) // moto applies conditional writes non-atomically otherwise
	e := env{cfg: cfg, bindings: awstest.Name(t, "thingpipe-bindings"), devices: awstest.Name(t, "thingpipe-devices")}
	awsfixture.Table(t, cfg, e.bindings, "thingName", awsfixture.Index{Name: DefaultUserIndex, Key: "userId"})
	awsfixture.Table(t, cfg, e.devices, "thingName")
	e.topic = awsfixture.NewTopic(t, cfg, awstest.Name(t, "thingpipe-events"))
	var err error
	if e.pub, err = eventsns.New(sns.NewFromConfig(cfg), e.topic.ARN); err != nil {
		t.Fatal(err)
	}
	e.store = NewDynamoStore(dynamodb.NewFromConfig(cfg), e.bindings, DefaultUserIndex, e.devices)
	e.prov, err = provisioning.New(provisioning.Config{DevicesTable: e.devices},
		provisioning.NewDynamoStore(dynamodb.NewFromConfig(cfg), e.devices), &eventsns.Recorder{})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (e env) stage(t *testing.T, deadline time.Duration) *Stage {
	s, err := New(Config{BindingsTable: e.bindings, DevicesTable: e.devices, ActivationDeadline: deadline}, e.store, e.pub)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (e env) provision(t *testing.T, thing string, connect bool) {
	t.Helper()
	ctx := context.Background()
	reg := fmt.Sprintf(`{"eventType":"THING_EVENT","timestamp":1000,"operation":"CREATED","thingName":%q}`, thing)
	if err := e.prov.Process(ctx, []byte(reg)); err != nil {
		t.Fatal(err)
	}
	if connect {
		if err := e.prov.Process(ctx, fmt.Appendf(nil, `{"eventType":"connected","timestamp":2000,"clientId":%q}`, thing)); err != nil {
			t.Fatal(err)
		}
	}
}

func request(req, thing, user string, sent time.Time) *message.Message {
	b, _ := json.Marshal(map[string]string{"requestId": req, "thingName": thing, "userId": user})
	m := message.NewMessage(uuid.NewString(), b)
	m.Metadata.Set(tpsqs.MetadataSentTimestamp, strconv.FormatInt(sent.UnixMilli(), 10))
	return m
}

type outcome struct {
	typ, request, user, reason string
	alreadyBound               bool
}

func outcomes(t *testing.T, tp *awsfixture.Topic, want int) []outcome {
	t.Helper()
	var out []outcome
	for _, n := range tp.Expect(t, want, 10*time.Second, 400*time.Millisecond) {
		env, err := events.DecodeEnvelope([]byte(n.Message))
		if err != nil {
			t.Fatal(err)
		}
		if n.Attr("type") != env.Type || n.Attr("thingName") != env.ThingName {
			t.Errorf("attributes %v do not match the event", n.MessageAttributes)
		}
		d, err := env.DecodeData()
		if err != nil {
			t.Fatal(err)
		}
		switch d := d.(type) {
		case *events.BindingCompleted:
			out = append(out, outcome{env.Type, d.RequestID, d.UserID, "", d.AlreadyBound})
		case *events.BindingRejected:
			out = append(out, outcome{env.Type, d.RequestID, d.UserID, d.Reason, false})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].request < out[j].request })
	return out
}

func TestBindingWaitsForActivationThenCompletes(t *testing.T) {
	e := setup(t)
	s := e.stage(t, time.Minute)
	e.provision(t, "dev-1", false) // REGISTERED, not connected
	sent := time.Now()
	for range 3 { // redeliveries while the device is not ACTIVE
		err := s.Handle(request("r1", "dev-1", "alice", sent))
		if !errors.Is(err, ErrNotActiveYet) || events.IsPermanent(err) {
			t.Fatalf("want retryable ErrNotActiveYet, got %v", err)
		}
	}
	e.provision(t, "dev-1", true)
	if err := s.Handle(request("r1", "dev-1", "alice", sent)); err != nil {
		t.Fatal(err)
	}
	// Redelivery of the same request and a new request by the same user: idempotent success.
	if err := s.Handle(request("r1", "dev-1", "alice", sent)); err != nil {
		t.Fatal(err)
	}
	if err := s.Handle(request("r2", "dev-1", "alice", time.Now())); err != nil {
		t.Fatal(err)
	}
	got := outcomes(t, e.topic, 3)
	want := []outcome{
		{events.TypeBindingCompleted, "r1", "alice", "", false},
		{events.TypeBindingCompleted, "r1", "alice", "", false},
		{events.TypeBindingCompleted, "r2", "alice", "", true},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("outcomes\n got %v\nwant %v", got, want)
	}
	b, found, err := e.store.Get(context.Background(), "dev-1")
	if err != nil || !found || b.UserID != "alice" || b.RequestID != "r1" {
		t.Errorf("stored binding %+v %v %v", b, found, err)
	}
}

func TestBindingRejections(t *testing.T) {
	e := setup(t)
	s := e.stage(t, time.Minute)
	e.provision(t, "dev-bound", true)
	e.provision(t, "dev-late", false)
	if err := s.Handle(request("a1", "dev-bound", "alice", time.Now())); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * time.Minute) // first sent longer ago than the deadline
	for _, m := range []*message.Message{
		request("b1", "dev-bound", "bob", time.Now()),
		request("c1", "dev-late", "carol", old),
		request("d1", "dev-nowhere", "dave", old),
	} {
		if err := s.Handle(m); err != nil {
			t.Fatalf("a rejection is an ack, got %v", err)
		}
	}
	if err := s.Handle(request("d2", "dev-nowhere", "dave", time.Now())); !errors.Is(err, ErrNotActiveYet) {
		t.Errorf("unknown device before the deadline: %v", err)
	}
	got := outcomes(t, e.topic, 4)
	want := []outcome{
		{events.TypeBindingCompleted, "a1", "alice", "", false},
		{events.TypeBindingRejected, "b1", "bob", events.ReasonAlreadyBound, false},
		{events.TypeBindingRejected, "c1", "carol", events.ReasonDeviceNotActive, false},
		{events.TypeBindingRejected, "d1", "dave", events.ReasonUnknownDevice, false},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("outcomes\n got %v\nwant %v", got, want)
	}
	if b, _, _ := e.store.Get(context.Background(), "dev-bound"); b.UserID != "alice" {
		t.Errorf("rejected request changed the binding: %+v", b)
	}
}

func TestTopicUserWinsAndBadPayloads(t *testing.T) {
	e := setup(t)
	s := e.stage(t, time.Minute)
	e.provision(t, "dev-42", true)
	payload, err := os.ReadFile("../../testdata/bad/binding-other-user.json") // userId mallory, topic app/alice/bind
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Process(context.Background(), payload, time.Now()); err != nil {
		t.Fatal(err)
	}
	if b, _, _ := e.store.Get(context.Background(), "dev-42"); b.UserID != "alice" {
		t.Fatalf("binding %+v: want the topic's user alice, not the payload's mallory", b)
	}
	for _, bad := range []string{"binding-missing-userid.json", "binding-thingname-wildcard.json", "truncated.json"} {
		p, _ := os.ReadFile("../../testdata/bad/" + bad)
		if err := s.Process(context.Background(), p, time.Now()); !events.IsPermanent(err) {
			t.Errorf("%s: want permanent, got %v", bad, err)
		}
	}
}

func TestQueryByUser(t *testing.T) {
	e := setup(t)
	s := e.stage(t, time.Minute)
	for _, th := range []string{"dev-1", "dev-2", "dev-3"} {
		e.provision(t, th, true)
	}
	for i, th := range []string{"dev-1", "dev-2", "dev-3"} {
		user := "alice"
		if th == "dev-3" {
			user = "bob"
		}
		if err := s.Handle(request(fmt.Sprint("r", i), th, user, time.Now())); err != nil {
			t.Fatal(err)
		}
	}
	got, err := e.store.QueryByUser(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	var things []string
	for _, b := range got {
		things = append(things, b.ThingName)
	}
	sort.Strings(things)
	if fmt.Sprint(things) != "[dev-1 dev-2]" {
		t.Errorf("alice's devices = %v", things)
	}
	if none, _ := e.store.QueryByUser(context.Background(), "nobody"); len(none) != 0 {
		t.Errorf("nobody's devices = %v", none)
	}
	e.topic.Drain(t, 200*time.Millisecond)
}

func TestTwoUsersRaceForOneDevice(t *testing.T) {
	e := setup(t)
	e.provision(t, "dev-race", true)
	workers := []*Stage{e.stage(t, time.Minute), e.stage(t, time.Minute)}
	users := []string{"alice", "bob", "carol", "dave"}
	errs := make([]error, len(users))
	var wg sync.WaitGroup
	for i, u := range users {
		wg.Go(func() { errs[i] = workers[i%2].Handle(request("req-"+u, "dev-race", u, time.Now())) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	b, _, _ := e.store.Get(context.Background(), "dev-race")
	completed, rejected := 0, 0
	for _, o := range outcomes(t, e.topic, len(users)) {
		switch {
		case o.typ == events.TypeBindingCompleted && o.user == b.UserID:
			completed++
		case o.typ == events.TypeBindingRejected && o.reason == events.ReasonAlreadyBound && o.user != b.UserID:
			rejected++
		default:
			t.Errorf("unexpected outcome %+v (bound to %s)", o, b.UserID)
		}
	}
	if completed != 1 || rejected != len(users)-1 {
		t.Errorf("%d completed, %d rejected; want 1 and %d", completed, rejected, len(users)-1)
	}
}
