package kinesis

import (
	"context"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/thingpipe/thingpipe/internal/apicalls"
)

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkPublish publishes telemetry-sized messages (about 100 bytes) through Publish calls of
// `batch` messages and reports PutRecords calls per 1,000 records.
func BenchmarkPublish(b *testing.B) {
	for _, batch := range []int{1000, 100} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			e := newEnv(b, 4)
			calls := apicalls.New()
			cfg := e.cfg.Copy()
			calls.Instrument(&cfg)
			pub, err := NewPublisher(PublisherConfig{Client: kinesis.NewFromConfig(cfg), Logger: quietLogger()})
			if err != nil {
				b.Fatal(err)
			}
			payload := []byte(`{"temperature": 21.5, "battery": 87, "ts": 1795441762000, "humidity": 40.25, "rssi": -71}`)
			msgs := make([]*message.Message, batch)
			b.ReportAllocs()
			b.ResetTimer()
			published := 0
			for published < b.N {
				n := min(batch, b.N-published)
				for i := range n {
					msgs[i] = message.NewMessage(fmt.Sprint(published+i), payload)
					msgs[i].Metadata.Set(MetadataPartitionKey, fmt.Sprintf("dev-%d", (published+i)%100))
				}
				if err := pub.Publish(e.stream, msgs[:n]...); err != nil {
					b.Fatal(err)
				}
				published += n
			}
			b.StopTimer()
			b.ReportMetric(float64(calls.Get("Kinesis", "PutRecords"))*1000/float64(b.N), "putrecords/1000rec")
		})
	}
}

// BenchmarkSubscribe reads b.N records already in a 2-shard stream with one worker that acks
// every message, and reports this process's CPU time per message (the SDK's HTTP and JSON work
// included, moto's excluded: it is another process), allocations per message and AWS calls per
// 1,000 messages.
func BenchmarkSubscribe(b *testing.B) {
	e := newEnv(b, 2)
	pub := e.publisher(b)
	payload := []byte(`{"temperature": 21.5, "battery": 87, "ts": 1795441762000, "humidity": 40.25, "rssi": -71}`)
	for published := 0; published < b.N; {
		n := min(1000, b.N-published)
		msgs := make([]*message.Message, n)
		for i := range msgs {
			msgs[i] = message.NewMessage(fmt.Sprint(published+i), payload)
			msgs[i].Metadata.Set(MetadataPartitionKey, fmt.Sprintf("dev-%d", (published+i)%100))
		}
		if err := pub.Publish(e.stream, msgs...); err != nil {
			b.Fatal(err)
		}
		published += n
	}
	calls := apicalls.New()
	cfg := e.cfg.Copy()
	calls.Instrument(&cfg)
	scfg := e.subConfig("bench", "w")
	scfg.Kinesis, scfg.DynamoDB = kinesis.NewFromConfig(cfg), dynamodb.NewFromConfig(cfg)
	scfg.CheckpointInterval = time.Second
	scfg.PollInterval = 200 * time.Millisecond
	sub, err := NewSubscriber(scfg)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	ch, err := sub.Subscribe(context.Background(), e.stream)
	if err != nil {
		b.Fatal(err)
	}
	for range b.N {
		m := <-ch
		m.Ack()
	}
	b.StopTimer()
	cpu := cpuTime() - cpu0
	_ = sub.Close()
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/msg")
	b.ReportMetric(float64(calls.Get("Kinesis", "GetRecords"))*1000/float64(b.N), "getrecords/1000msg")
	b.ReportMetric(float64(calls.Service("DynamoDB"))*1000/float64(b.N), "dynamodb/1000msg")
}

// BenchmarkPublishConcurrent publishes one message per Publish call from 64 goroutines: group
// commit folds concurrent calls into shared PutRecords calls.
func BenchmarkPublishConcurrent(b *testing.B) {
	e := newEnv(b, 4)
	calls := apicalls.New()
	cfg := e.cfg.Copy()
	calls.Instrument(&cfg)
	pub, err := NewPublisher(PublisherConfig{Client: kinesis.NewFromConfig(cfg), Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	payload := []byte(`{"temperature": 21.5, "battery": 87, "ts": 1795441762000, "humidity": 40.25, "rssi": -71}`)
	var seq atomic.Int64
	b.SetParallelism(32) // 32 × GOMAXPROCS goroutines
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := seq.Add(1)
			m := message.NewMessage(fmt.Sprint(i), payload)
			m.Metadata.Set(MetadataPartitionKey, fmt.Sprintf("dev-%d", i%100))
			if err := pub.Publish(e.stream, m); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(calls.Get("Kinesis", "PutRecords"))*1000/float64(b.N), "putrecords/1000rec")
}
