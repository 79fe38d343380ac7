package sqs

import (
	"context"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/thingpipe/thingpipe/internal/apicalls"
	"github.com/thingpipe/thingpipe/internal/awstest"
)

// BenchmarkSubscriberReceiveAck receives and acks b.N messages from a queue holding a backlog (a
// steady load: every receive can return 10) and reports the SQS calls the Subscriber made per
// 1,000 messages, counted in the SDK's middleware, and the CPU time of this process per message.
// The floor is 200 calls/1000msg: 100 receives of 10 and 100 delete batches of 10. Run it with a
// fixed count, e.g. -benchtime=2000x: wall time per message is moto's, not ours.
func BenchmarkSubscriberReceiveAck(b *testing.B) {
	awsCfg := awstest.Config(b)
	feeder := sqs.NewFromConfig(awsCfg) // not counted
	counter := apicalls.New()
	subAWS := awsCfg.Copy()
	counter.Instrument(&subAWS)

	name, _ := createQueue(b, feeder, "bench", false)
	pub, err := NewPublisher(PublisherConfig{Client: feeder, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	batch := make([]*message.Message, 0, 100)
	for i := range b.N {
		batch = append(batch, message.NewMessage(watermill.NewUUID(), []byte(`{"temperature":21.5,"battery":87,"n":`+strconv.Itoa(i)+`}`)))
		if len(batch) == cap(batch) || i == b.N-1 {
			if err := pub.Publish(name, batch...); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}

	sub, err := NewSubscriber(SubscriberConfig{
		Client:   sqs.NewFromConfig(subAWS),
		Logger:   quietLogger(),
		WaitTime: 2 * time.Second, // only the last, empty polls wait; Close lets them finish
	})
	if err != nil {
		b.Fatal(err)
	}
	counter.Reset()
	cpu0 := cpuTime()
	b.ReportAllocs()
	b.ResetTimer()

	msgs, err := sub.Subscribe(context.Background(), name)
	if err != nil {
		b.Fatal(err)
	}
	for range b.N {
		select {
		case m := <-msgs:
			m.Ack()
		case <-time.After(30 * time.Second):
			b.Fatal("no message within 30s")
		}
	}
	if err := sub.Close(); err != nil { // sends the last deletes
		b.Fatal(err)
	}

	b.StopTimer()
	cpu := cpuTime() - cpu0
	calls := counter.Service("SQS")
	b.ReportMetric(float64(calls)*1000/float64(b.N), "calls/1000msg")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/msg")
	if b.N >= 1000 {
		for _, c := range counter.Snapshot() {
			b.Logf("%s %s: %d", c.Service, c.Operation, c.Calls)
		}
	}
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkPublisherBatch publishes b.N messages in Publish calls of 100 and reports the SQS calls
// per 1,000 messages (the floor is 100: batches of 10) and this process's CPU per message.
func BenchmarkPublisherBatch(b *testing.B) {
	awsCfg := awstest.Config(b)
	counter := apicalls.New()
	counter.Instrument(&awsCfg)
	client := sqs.NewFromConfig(awsCfg)
	_, url := createQueue(b, client, "bench-pub", false)
	pub, err := NewPublisher(PublisherConfig{Client: client, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	msgs := make([]*message.Message, b.N)
	for i := range msgs {
		msgs[i] = message.NewMessage(watermill.NewUUID(), []byte(`{"temperature":21.5,"battery":87,"n":`+strconv.Itoa(i)+`}`))
		msgs[i].Metadata.Set("thingName", "dev-"+strconv.Itoa(i%50))
	}
	counter.Reset()
	cpu0 := cpuTime()
	b.ReportAllocs()
	b.ResetTimer()
	for start := 0; start < b.N; start += 100 {
		if err := pub.Publish(url, msgs[start:min(start+100, b.N)]...); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	cpu := cpuTime() - cpu0
	b.ReportMetric(float64(counter.Service("SQS"))*1000/float64(b.N), "calls/1000msg")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/msg")
}
