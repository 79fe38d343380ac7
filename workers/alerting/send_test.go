package alerting

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/thingpipe/thingpipe/events"
)

// journal records the order of the stage's side effects across its collaborators.
type journal struct {
	mu  sync.Mutex
	ops []string
}

func (j *journal) add(op string) {
	j.mu.Lock()
	j.ops = append(j.ops, op)
	j.mu.Unlock()
}

func (j *journal) list() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]string(nil), j.ops...)
}

type journalStore struct {
	Store
	j *journal
}

func (s journalStore) MarkNotified(ctx context.Context, key string, kind Kind, id string) error {
	s.j.add("mark " + string(kind))
	return s.Store.MarkNotified(ctx, key, kind, id)
}

func (s journalStore) Release(ctx context.Context, key string, kind Kind, id, owner string) error {
	s.j.add("release " + string(kind))
	return s.Store.Release(ctx, key, kind, id, owner)
}

type journalNotifier struct {
	next Notifier
	j    *journal
	fail int // fail the first fail calls without sending
}

func (n *journalNotifier) Notify(ctx context.Context, ns []Notification) []error {
	if n.fail > 0 {
		n.fail--
		n.j.add("email failed")
		errs := make([]error, len(ns))
		for i := range errs {
			errs[i] = errors.New("SNS unavailable")
		}
		return errs
	}
	for _, x := range ns {
		n.j.add("email " + string(x.Kind))
	}
	return n.next.Notify(ctx, ns)
}

type journalPublisher struct {
	next EventPublisher
	j    *journal
	fail int
}

func (p *journalPublisher) Publish(ctx context.Context, env events.Envelope) error {
	if p.fail > 0 {
		p.fail--
		p.j.add("event failed")
		return errors.New("SNS unavailable")
	}
	p.j.add("event " + env.Type)
	return p.next.Publish(ctx, env)
}

// journaled builds a worker whose store, notifier and publisher write to one journal.
func (e env) journaled(t *testing.T, notifyFails, publishFails int) (*Stage, *journal) {
	t.Helper()
	j := &journal{}
	base := e.stage(t, DefaultPolicies()[:1], 30*time.Second, nil)
	s, err := New(base.cfg, journalStore{NewDynamoStore(dynamodb.NewFromConfig(e.cfg), e.table), j},
		&journalNotifier{next: base.notifier, j: j, fail: notifyFails}, &journalPublisher{next: base.pub, j: j, fail: publishFails})
	if err != nil {
		t.Fatal(err)
	}
	return s, j
}

// The email is the one effect SNS cannot deduplicate, so only its mark may follow it: the outcome
// event goes out before it.
func TestEventBeforeEmailThenMark(t *testing.T) {
	e := setup(t)
	s, j := e.journaled(t, 0, 0)
	for i := range 3 {
		if err := deliver(t, s, reading("dev-1", i, `{"temperature":95}`)); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"event alert.firing", "email FIRING", "mark FIRING"}
	if got := j.list(); !slices.Equal(got, want) {
		t.Errorf("side effects %q, want %q", got, want)
	}
	e.alerts.Expect(t, 1, 10*time.Second, 300*time.Millisecond)
}

// A notification that was not sent releases its claim, so the redelivery (here: to another worker)
// sends it at once instead of waiting out the 30 s lease; still one email and one event.
func TestUnsentNotificationIsReleased(t *testing.T) {
	for name, c := range map[string]struct{ notifyFails, publishFails int }{
		"email failed": {notifyFails: 1},
		"event failed": {publishFails: 1},
	} {
		t.Run(name, func(t *testing.T) {
			e := setup(t)
			a, j := e.journaled(t, c.notifyFails, c.publishFails)
			b := e.stage(t, DefaultPolicies()[:1], 30*time.Second, nil)
			for i := range 2 {
				if err := a.Handle(reading("dev-2", i, `{"temperature":95}`)); err != nil {
					t.Fatal(err)
				}
			}
			third := reading("dev-2", 2, `{"temperature":95}`)
			if err := a.Handle(third.Copy()); err == nil || events.IsPermanent(err) {
				t.Fatalf("failed send: %v, want a retryable error", err)
			}
			if got := j.list(); got[len(got)-1] != "release FIRING" {
				t.Errorf("side effects %q: the claim was not released", got)
			}
			if err := b.Handle(third); err != nil {
				t.Fatalf("redelivery to another worker: %v (the claim should be free)", err)
			}
			if got := e.alerts.Expect(t, 1, 10*time.Second, 400*time.Millisecond); len(got) != 1 {
				t.Errorf("%d emails, want 1", len(got))
			}
			if got := e.events.Expect(t, c.notifyFails+1, 10*time.Second, 400*time.Millisecond); len(got) != c.notifyFails+1 {
				// An email failure re-publishes the event (same id): at-least-once events.
				t.Errorf("%d events, want %d", len(got), c.notifyFails+1)
			}
		})
	}
}
