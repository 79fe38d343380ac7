package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/thingpipe/thingpipe/pipeline"
)

// A stage whose handler rejects one message: it lands on the dead-letter topic with its reason,
// the other is acked, and cancelling the context shuts the pipeline down.
func Example() {
	source := gochannel.NewGoChannel(gochannel.Config{}, nil)
	dlq := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 1}, nil)
	defer dlq.Close()
	dead, _ := dlq.Subscribe(context.Background(), "thingpipe-binding-dlq")

	handled := make(chan string, 1)
	p, err := pipeline.New(pipeline.Options{Logger: slog.New(slog.DiscardHandler), ShutdownTimeout: 5 * time.Second},
		pipeline.Stage{
			Name: "binding", Subscriber: source, Topic: "thingpipe-binding", DeadLetter: dlq,
			Handler: func(msg *message.Message) error {
				if string(msg.Payload) == "{}" {
					return pipeline.Permanent(errors.New("requestId: missing"))
				}
				handled <- string(msg.Payload)
				return nil
			},
		})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()
	for !p.Health().Readiness(ctx).Ready {
		time.Sleep(time.Millisecond)
	}

	_ = source.Publish("thingpipe-binding", message.NewMessage("m1", []byte("{}")))
	d := <-dead
	d.Ack()
	fmt.Println(d.Metadata.Get(pipeline.MetadataDLQKind), "|", d.Metadata.Get(pipeline.MetadataDLQReason))

	_ = source.Publish("thingpipe-binding", message.NewMessage("m2", []byte(`{"requestId":"r1"}`)))
	fmt.Println("handled", <-handled)

	cancel()
	fmt.Println("stopped:", <-done)
	// Output:
	// permanent | requestId: missing
	// handled {"requestId":"r1"}
	// stopped: <nil>
}
