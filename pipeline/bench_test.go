package pipeline

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
)

// BenchmarkHandlerChain measures what the middleware adds per message (the router and transport
// excluded): recoverer, lifecycle, correlation, tracing (no-op provider), metrics, poison, retry and
// panic recovery around a handler that succeeds.
func BenchmarkHandlerChain(b *testing.B) {
	dlq := gochannel.NewGoChannel(gochannel.Config{}, nil)
	defer dlq.Close()
	p, err := New(Options{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))}, Stage{
		Name: "alerting", Subscriber: dlq, Topic: "t", DeadLetter: dlq,
		Handler: func(*message.Message) error { return nil },
	})
	if err != nil {
		b.Fatal(err)
	}
	r, err := p.newStageRunner(p.stages[0], context.Background())
	if err != nil {
		b.Fatal(err)
	}
	mws := r.middlewares()
	h := message.HandlerFunc(func(msg *message.Message) ([]*message.Message, error) { return nil, p.stages[0].Handler(msg) })
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	msgs := make([]*message.Message, b.N)
	for i := range msgs {
		msgs[i] = message.NewMessage("uuid", []byte(`{"temperature":21.5}`))
		msgs[i].Metadata.Set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := h(msgs[i]); err != nil {
			b.Fatal(err)
		}
	}
}
