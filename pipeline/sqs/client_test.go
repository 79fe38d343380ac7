package sqs

import (
	"context"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// faultyClient is the real SDK client with a thin layer that records batch calls and can make
// chosen entries of a real batch fail: those entries are taken out of the request and reported
// failed, the rest go to SQS (moto) as they are.
type faultyClient struct {
	*sqs.Client

	mu sync.Mutex
	// failDelete and failSend decide, per call number (from 0) and entry, whether it fails.
	failDelete func(call int, handle string) *types.BatchResultErrorEntry
	failSend   func(call int, body string) *types.BatchResultErrorEntry

	deleteCalls [][]string // receipt handles per DeleteMessageBatch call
	sendCalls   [][]string // bodies per SendMessageBatch call
	visibility  []types.ChangeMessageVisibilityBatchRequestEntry
	receiveMax  []int32
}

func (c *faultyClient) DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error) {
	c.mu.Lock()
	call := len(c.deleteCalls)
	handles := make([]string, len(in.Entries))
	var pass []types.DeleteMessageBatchRequestEntry
	var failed []types.BatchResultErrorEntry
	for i, e := range in.Entries {
		handles[i] = aws.ToString(e.ReceiptHandle)
		if c.failDelete != nil {
			if f := c.failDelete(call, handles[i]); f != nil {
				f.Id = e.Id
				failed = append(failed, *f)
				continue
			}
		}
		pass = append(pass, e)
	}
	c.deleteCalls = append(c.deleteCalls, handles)
	c.mu.Unlock()
	out := &sqs.DeleteMessageBatchOutput{}
	if len(pass) > 0 {
		real, err := c.Client.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: in.QueueUrl, Entries: pass}, opts...)
		if err != nil {
			return nil, err
		}
		out = real
	}
	out.Failed = append(out.Failed, failed...)
	return out, nil
}

func (c *faultyClient) SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	c.mu.Lock()
	call := len(c.sendCalls)
	bodies := make([]string, len(in.Entries))
	var pass []types.SendMessageBatchRequestEntry
	var failed []types.BatchResultErrorEntry
	for i, e := range in.Entries {
		bodies[i] = aws.ToString(e.MessageBody)
		if c.failSend != nil {
			if f := c.failSend(call, bodies[i]); f != nil {
				f.Id = e.Id
				failed = append(failed, *f)
				continue
			}
		}
		pass = append(pass, e)
	}
	c.sendCalls = append(c.sendCalls, bodies)
	c.mu.Unlock()
	out := &sqs.SendMessageBatchOutput{}
	if len(pass) > 0 {
		real, err := c.Client.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: in.QueueUrl, Entries: pass}, opts...)
		if err != nil {
			return nil, err
		}
		out = real
	}
	out.Failed = append(out.Failed, failed...)
	return out, nil
}

func (c *faultyClient) ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, opts ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error) {
	c.mu.Lock()
	c.visibility = append(c.visibility, in.Entries...)
	c.mu.Unlock()
	return c.Client.ChangeMessageVisibilityBatch(ctx, in, opts...)
}

func (c *faultyClient) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	c.mu.Lock()
	c.receiveMax = append(c.receiveMax, in.MaxNumberOfMessages)
	c.mu.Unlock()
	return c.Client.ReceiveMessage(ctx, in, opts...)
}

func (c *faultyClient) visibilityFor(handle string) []int32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int32
	for _, e := range c.visibility {
		if aws.ToString(e.ReceiptHandle) == handle {
			out = append(out, e.VisibilityTimeout)
		}
	}
	return out
}

// queueCounts returns the visible and in-flight message counts of a queue.
func queueCounts(t *testing.T, client *sqs.Client, url string) (visible, inFlight string) {
	t.Helper()
	out, err := client.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url),
		AttributeNames: []types.QueueAttributeName{
			types.QueueAttributeNameApproximateNumberOfMessages,
			types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		},
	})
	if err != nil {
		t.Fatalf("GetQueueAttributes: %v", err)
	}
	return out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessages)],
		out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessagesNotVisible)]
}

// next returns the next message from ch, failing the test after timeout.
func next(t *testing.T, ch <-chan *message.Message, timeout time.Duration) *message.Message {
	t.Helper()
	select {
	case m, ok := <-ch:
		if !ok {
			t.Fatal("messages channel closed")
		}
		return m
	case <-time.After(timeout):
		t.Fatalf("no message within %s", timeout)
	}
	return nil
}

// assertNoMessage fails if ch yields a message within d.
func assertNoMessage(t *testing.T, ch <-chan *message.Message, d time.Duration) {
	t.Helper()
	select {
	case m, ok := <-ch:
		if ok {
			t.Fatalf("unexpected message %s (payload %q)", m.UUID, m.Payload)
		}
	case <-time.After(d):
	}
}

// assertNoGoroutines fails if any goroutine of this package's subscriber machinery is still running.
func assertNoGoroutines(t *testing.T) {
	t.Helper()
	var stacks string
	for range 50 {
		buf := make([]byte, 1<<20)
		stacks = string(buf[:runtime.Stack(buf, true)])
		leaked := false
		for _, g := range strings.Split(stacks, "\n\n") {
			if strings.Contains(g, "pipeline/sqs.(*subscription)") || strings.Contains(g, "pipeline/sqs.(*batcher)") {
				leaked = true
			}
		}
		if !leaked {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("subscriber goroutines still running after Close:\n%s", stacks)
}
