package sqs

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// instantAPI answers at once with full batches, so a benchmark measures this package alone,
// without the SDK's HTTP and JSON or moto.
type instantAPI struct {
	SubscriberAPI // nil: calls not listed here are not expected
	next          atomic.Int64
	deleted       atomic.Int64
}

func (a *instantAPI) ReceiveMessage(_ context.Context, in *sqs.ReceiveMessageInput, _ ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	out := &sqs.ReceiveMessageOutput{Messages: make([]types.Message, in.MaxNumberOfMessages)}
	for i := range out.Messages {
		n := strconv.FormatInt(a.next.Add(1), 10)
		out.Messages[i] = types.Message{
			MessageId: aws.String("id-" + n), ReceiptHandle: aws.String("handle-" + n),
			Body:       aws.String(`{"temperature":21.5,"battery":87}`),
			Attributes: map[string]string{"ApproximateReceiveCount": "1", "SentTimestamp": "1795441762000"},
			MessageAttributes: map[string]types.MessageAttributeValue{
				UUIDAttribute: {DataType: aws.String("String"), StringValue: aws.String("uuid-" + n)},
			},
		}
	}
	return out, nil
}

func (a *instantAPI) DeleteMessageBatch(_ context.Context, in *sqs.DeleteMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error) {
	a.deleted.Add(int64(len(in.Entries)))
	return &sqs.DeleteMessageBatchOutput{}, nil
}

// BenchmarkSubscriberOverhead is the Subscriber's own cost per message received and acked
// (conversion, hand-out, ack tracking, delete batching), with an API that answers at once.
func BenchmarkSubscriberOverhead(b *testing.B) {
	api := &instantAPI{}
	sub, err := NewSubscriber(SubscriberConfig{Client: api, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.ReportAllocs()
	cpu0 := cpuTime()
	b.ResetTimer()
	msgs, err := sub.Subscribe(ctx, "https://sqs.us-east-1.amazonaws.com/123456789012/bench")
	if err != nil {
		b.Fatal(err)
	}
	for range b.N {
		(<-msgs).Ack()
	}
	b.StopTimer()
	cpu := cpuTime() - cpu0
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/msg")
	cancel()
	for m := range msgs { // what was received after the last one counted
		m.Ack()
	}
	_ = sub.Close()
	if got := api.deleted.Load(); got < int64(b.N) {
		b.Fatalf("%d deleted, want at least %d", got, b.N)
	}
}

func (a *instantAPI) ChangeMessageVisibilityBatch(context.Context, *sqs.ChangeMessageVisibilityBatchInput, ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error) {
	return &sqs.ChangeMessageVisibilityBatchOutput{}, nil
}
