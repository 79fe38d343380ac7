package sqs

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
)

// Through watermill's router: handlers run concurrently, a handler error (nack) brings the message
// back with receive count 2, and the router's Close closes the subscriber cleanly.
func TestRouterRunsHandlersConcurrently(t *testing.T) {
	client := testClient(t)
	name, url := createQueue(t, client, "router", false)
	pub, sub := newPair(t, client, fastConfig(nil), PublisherConfig{})
	const total = 20
	var sent []*message.Message
	for i := range total {
		sent = append(sent, message.NewMessage(watermill.NewUUID(), []byte(strconv.Itoa(i))))
	}
	if err := pub.Publish(name, sent...); err != nil {
		t.Fatal(err)
	}

	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	var (
		active, maxActive atomic.Int32
		mu                sync.Mutex
		handled           = map[string]string{} // payload → receive count when handled successfully
		failedOnce        bool
		done              = make(chan struct{})
	)
	router.AddConsumerHandler("h", name, sub, func(m *message.Message) error {
		n := active.Add(1)
		defer active.Add(-1)
		for old := maxActive.Load(); n > old && !maxActive.CompareAndSwap(old, n); old = maxActive.Load() {
		}
		time.Sleep(200 * time.Millisecond) // a handler doing I/O
		mu.Lock()
		defer mu.Unlock()
		if string(m.Payload) == "7" && !failedOnce {
			failedOnce = true
			return errors.New("transient")
		}
		if _, dup := handled[string(m.Payload)]; !dup {
			handled[string(m.Payload)] = m.Metadata.Get(MetadataReceiveCount)
			if len(handled) == total {
				close(done)
			}
		}
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- router.Run(ctx) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		mu.Lock()
		t.Fatalf("%d of %d handled", len(handled), total)
	}
	if err := router.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-runErr; err != nil {
		t.Fatal(err)
	}
	if maxActive.Load() < 5 {
		t.Errorf("at most %d handlers ran at once, want many", maxActive.Load())
	}
	if handled["7"] != "2" {
		t.Errorf("message 7 handled with receive count %q after one failure, want 2", handled["7"])
	}
	if visible, inFlight := queueCounts(t, client, url); visible != "0" || inFlight != "0" {
		t.Errorf("queue holds %s visible and %s in flight after the router closed, want none", visible, inFlight)
	}
	assertNoGoroutines(t)
}
