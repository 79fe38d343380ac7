package broker_test

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/thingpipe/thingpipe/broker"
)

type countSink struct{ n atomic.Int64 }

func (c *countSink) HandleMessage(context.Context, broker.Message) { c.n.Add(1) }

func (c *countSink) waitAtLeast(b *testing.B, n int64) {
	deadline := time.Now().Add(time.Minute)
	for c.n.Load() < n {
		if time.Now().After(deadline) {
			b.Fatalf("sink got %d of %d", c.n.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// BenchmarkClientPublishToSink: one MQTT 5 client over loopback TCP, each op one telemetry publish that
// reaches the sink (QoS 1 waits for PUBACK, so it measures a round trip; QoS 0 is pipelined).
func BenchmarkClientPublishToSink(b *testing.B) {
	payload := []byte(`{"temperature": 21.5, "battery": 87, "ts": 1795441762000}`)
	for _, qos := range []byte{0, 1} {
		b.Run(fmt.Sprintf("qos%d", qos), func(b *testing.B) {
			sink := &countSink{}
			br, err := broker.New(broker.Config{Addr: "127.0.0.1:0", Sink: sink, Logger: quietLogger()})
			if err != nil {
				b.Fatal(err)
			}
			if err := br.Start(context.Background()); err != nil {
				b.Fatal(err)
			}
			defer br.Close(context.Background())
			conn, err := net.Dial("tcp", br.Addr())
			if err != nil {
				b.Fatal(err)
			}
			c := paho.NewClient(paho.ClientConfig{ClientID: "bench", Conn: conn})
			if _, err := c.Connect(context.Background(), &paho.Connect{ClientID: "bench", CleanStart: true, KeepAlive: 30}); err != nil {
				b.Fatal(err)
			}
			defer c.Disconnect(&paho.Disconnect{})
			sink.waitAtLeast(b, 1) // the connected event
			base := sink.n.Load()
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := c.Publish(ctx, &paho.Publish{Topic: "dt/bench/telemetry", QoS: qos, Payload: payload}); err != nil {
					b.Fatal(err)
				}
			}
			sink.waitAtLeast(b, base+int64(b.N))
		})
	}
}

// BenchmarkRepublish: the broker's own publish path (queue + worker + sink), no network.
func BenchmarkRepublish(b *testing.B) {
	sink := &countSink{}
	br, err := broker.New(broker.Config{Addr: "127.0.0.1:0", Sink: sink, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	if err := br.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	payload := []byte(`{"temperature": 21.5, "battery": 87, "ts": 1795441762000}`)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := br.Republish(ctx, "out/bench", payload, 1); err != nil {
			b.Fatal(err)
		}
	}
	if err := br.Close(context.Background()); err != nil {
		b.Fatal(err)
	}
	if got := sink.n.Load(); got < int64(b.N) {
		b.Fatalf("sink got %d of %d", got, b.N)
	}
}
