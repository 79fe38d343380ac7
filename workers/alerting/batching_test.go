package alerting

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// fakeNotifier records the size of each call and fails notifications of thing "bad".
type fakeNotifier struct {
	mu    sync.Mutex
	calls []int
}

func (f *fakeNotifier) Notify(_ context.Context, ns []Notification) []error {
	f.mu.Lock()
	f.calls = append(f.calls, len(ns))
	f.mu.Unlock()
	errs := make([]error, len(ns))
	for i, n := range ns {
		if n.State.ThingName == "bad" {
			errs[i] = errors.New("refused")
		}
	}
	return errs
}

func TestBatchingNotifierGroupsConcurrentCalls(t *testing.T) {
	f := &fakeNotifier{}
	b := NewBatchingNotifier(f, time.Hour, time.Second) // only full groups and Close send
	var wg sync.WaitGroup
	results := make([][]error, 25)
	for i := range 25 {
		thing := fmt.Sprint("dev-", i)
		if i == 7 {
			thing = "bad"
		}
		wg.Go(func() { results[i] = b.Notify(context.Background(), []Notification{{State: State{ThingName: thing}}}) })
	}
	time.Sleep(200 * time.Millisecond)
	b.Close()
	wg.Wait()
	total := 0
	for _, n := range f.calls {
		if n > maxBatch {
			t.Errorf("a call of %d notifications exceeds PublishBatch's %d", n, maxBatch)
		}
		total += n
	}
	if total != 25 || len(f.calls) != 3 {
		t.Errorf("calls %v, want 10+10+5", f.calls)
	}
	for i, errs := range results {
		if len(errs) != 1 || (errs[0] != nil) != (i == 7) {
			t.Errorf("caller %d got %v", i, errs)
		}
	}
	if errs := b.Notify(context.Background(), []Notification{{}}); !errors.Is(errs[0], ErrNotifierClosed) {
		t.Errorf("after Close: %v", errs)
	}
}

func TestBatchingNotifierLinger(t *testing.T) {
	f := &fakeNotifier{}
	b := NewBatchingNotifier(f, 20*time.Millisecond, time.Second)
	defer b.Close()
	errs := b.Notify(context.Background(), []Notification{{State: State{ThingName: "dev-1"}}})
	if errs[0] != nil || len(f.calls) != 1 {
		t.Errorf("lone notification: %v, calls %v", errs, f.calls)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if errs := b.Notify(ctx, []Notification{{}}); !errors.Is(errs[0], context.Canceled) {
		t.Errorf("cancelled caller: %v", errs)
	}
}
