package binding

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/thingpipe/thingpipe/events"
)

// TestInAWatermillRouter runs the stage as a router handler the way the pipeline does: a retry
// middleware that stops on permanent errors, inside a poison-queue middleware that takes exactly the
// permanent ones. A request waits (retried) until its device activates; a bad payload goes to the
// poison queue with its reason at once.
func TestInAWatermillRouter(t *testing.T) {
	e := setup(t)
	e.provision(t, "dev-r", false)
	stage := e.stage(t, time.Minute)

	pubsub := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	defer pubsub.Close()
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 5 * time.Second}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	poison, err := middleware.PoisonQueueWithFilter(pubsub, "binding-dlq", events.IsPermanent)
	if err != nil {
		t.Fatal(err)
	}
	router.AddMiddleware(poison, middleware.Retry{
		MaxRetries: 100, InitialInterval: 20 * time.Millisecond, MaxInterval: 100 * time.Millisecond, Multiplier: 1.5,
		ShouldRetry: func(p middleware.RetryParams) bool { return !events.IsPermanent(p.Err) },
	}.Middleware)
	router.AddConsumerHandler("binding", "binding", pubsub, stage.Handle)
	dlq, err := pubsub.Subscribe(context.Background(), "binding-dlq")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = router.Run(context.Background()) }()
	defer router.Close()
	<-router.Running()

	if err := pubsub.Publish("binding", request("r-1", "dev-r", "alice", time.Now())); err != nil {
		t.Fatal(err)
	}
	if err := pubsub.Publish("binding", message.NewMessage("bad", []byte(`{"requestId":"r-2","thingName":"a/b","userId":"x"}`))); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-dlq:
		m.Ack()
		if m.UUID != "bad" || m.Metadata.Get(middleware.ReasonForPoisonedKey) == "" {
			t.Errorf("poisoned %s with reason %q", m.UUID, m.Metadata.Get(middleware.ReasonForPoisonedKey))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("bad payload never reached the poison queue")
	}
	time.Sleep(200 * time.Millisecond) // the request is being retried: the device is not active
	e.provision(t, "dev-r", true)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if b, found, _ := e.store.Get(context.Background(), "dev-r"); found && b.UserID == "alice" {
			got := outcomes(t, e.topic, 1)
			if len(got) != 1 || got[0].typ != events.TypeBindingCompleted {
				t.Errorf("outcomes %v", got)
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("the request never completed after the device activated")
}
