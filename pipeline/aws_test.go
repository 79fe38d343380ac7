package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/google/go-cmp/cmp"

	"github.com/thingpipe/thingpipe/internal/apicalls"
	"github.com/thingpipe/thingpipe/internal/awstest"
	"github.com/thingpipe/thingpipe/pipeline/sqs"
)

func mainWithMoto(m *testing.M) int { return awstest.Main(m) }

func newSQSPublisher(t *testing.T, client *awssqs.Client) *sqs.Publisher {
	t.Helper()
	p, err := sqs.NewPublisher(sqs.PublisherConfig{Client: client, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// A message that keeps failing on a real SQS queue is nacked, redelivered by SQS with a growing
// receive count, and dead-lettered once the count passes max_receives; the source queue is left empty.
func TestSQSReceiveCountDeadLettersOnMoto(t *testing.T) {
	checkNoLeaks(t)
	ctx := context.Background()
	cfg := awstest.Config(t)
	client := awssqs.NewFromConfig(cfg)
	src, dlq := awstest.Name(t, "thingpipe-binding"), awstest.Name(t, "thingpipe-binding-dlq")
	srcQ, err := client.CreateQueue(ctx, &awssqs.CreateQueueInput{QueueName: &src})
	if err != nil {
		t.Fatal(err)
	}
	dlqQ, err := client.CreateQueue(ctx, &awssqs.CreateQueueInput{QueueName: &dlq})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := sqs.NewSubscriber(sqs.SubscriberConfig{Client: client, Logger: testLogger(t), WaitTime: time.Second,
		NackBackoffInitial: time.Second, NackBackoffMax: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var counts []string
	m := NewMetrics()
	h := NewHealth(HealthOptions{})
	p, err := New(Options{Logger: testLogger(t), Metrics: m, Health: h, ShutdownTimeout: 5 * time.Second}, Stage{
		Name: "binding", Subscriber: sub, Topic: src,
		Handler: func(msg *message.Message) error {
			mu.Lock()
			counts = append(counts, msg.Metadata.Get(sqs.MetadataReceiveCount))
			mu.Unlock()
			return errors.New("device not active yet")
		},
		DeadLetter: newSQSPublisher(t, client), DeadLetterTopic: dlq,
		Failure: FailurePolicy{MaxReceives: 2, Retry: Backoff{MaxRetries: 1, Initial: time.Millisecond}, NackOnExhausted: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	if _, err := client.SendMessage(ctx, &awssqs.SendMessageInput{QueueUrl: srcQ.QueueUrl,
		MessageBody: aws.String(`{"requestId":"r1","thingName":"dev-42","userId":"u1"}`)}); err != nil {
		t.Fatal(err)
	}

	var got *sqstypes.Message
	eventually(t, "dead-lettered message", func() bool {
		out, err := client.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{QueueUrl: dlqQ.QueueUrl,
			WaitTimeSeconds: 1, MessageAttributeNames: []string{"All"}})
		if err != nil || len(out.Messages) == 0 {
			return false
		}
		got = &out.Messages[0]
		return true
	})
	attr := func(k string) string { return aws.ToString(got.MessageAttributes[k].StringValue) }
	if attr(MetadataDLQKind) != KindMaxReceives || attr(MetadataDLQReceiveCount) != "3" ||
		attr(MetadataDLQReason) != "receive count 3 exceeds max_receives 2" {
		t.Errorf("dead-letter attributes kind=%q receive_count=%q reason=%q", attr(MetadataDLQKind), attr(MetadataDLQReceiveCount), attr(MetadataDLQReason))
	}
	mu.Lock()
	if diff := cmp.Diff([]string{"1", "1", "2", "2"}, counts); diff != "" {
		t.Errorf("handler saw receive counts (-want +got):\n%s", diff)
	}
	mu.Unlock()
	eventually(t, "source queue empty", func() bool {
		a, err := client.GetQueueAttributes(ctx, &awssqs.GetQueueAttributesInput{QueueUrl: srcQ.QueueUrl,
			AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages,
				sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible}})
		return err == nil && a.Attributes["ApproximateNumberOfMessages"] == "0" && a.Attributes["ApproximateNumberOfMessagesNotVisible"] == "0"
	})
	for name, want := range map[string]float64{
		"thingpipe_messages_received_total": 3, "thingpipe_messages_nacked_total": 2, "thingpipe_messages_acked_total": 0,
	} {
		if got := metric(t, m.Registry(), name, "stage", "binding"); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if got := metric(t, m.Registry(), "thingpipe_messages_dead_lettered_total", "stage", "binding", "kind", KindMaxReceives); got != 1 {
		t.Errorf("dead_lettered = %v, want 1", got)
	}
}

// A poison message lands in a real SQS dead-letter queue with its reason in the message attributes.
func TestDeadLetterToSQSOnMoto(t *testing.T) {
	checkNoLeaks(t)
	ctx := context.Background()
	cfg := awstest.Config(t)
	calls := apicalls.New()
	calls.Instrument(&cfg)
	client := awssqs.NewFromConfig(cfg)
	dlqName := awstest.Name(t, "thingpipe-provisioning-dlq")
	q, err := client.CreateQueue(ctx, &awssqs.CreateQueueInput{QueueName: &dlqName})
	if err != nil {
		t.Fatal(err)
	}

	in := gochannel.NewGoChannel(gochannel.Config{}, nil)
	h := NewHealth(HealthOptions{})
	p, err := New(Options{Logger: testLogger(t), Health: h, ShutdownTimeout: 5 * time.Second}, Stage{
		Name: "provisioning", Subscriber: in, Topic: "thingpipe-provisioning",
		Handler: func(*message.Message) error {
			return fmt.Errorf("decoding registry event: %w", badPayload{"thingName"})
		},
		DeadLetter: newSQSPublisher(t, client), DeadLetterTopic: dlqName,
		Failure: FailurePolicy{MaxReceives: 5, Retry: Backoff{MaxRetries: 3, Initial: time.Millisecond}},
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()
	eventually(t, "ready", func() bool { return h.Readiness(ctx).Ready })

	msg := message.NewMessage("3f1c", []byte(`{"eventType":"THING_EVENT","operation":"CREATED"}`))
	msg.Metadata.Set(sqs.MetadataReceiveCount, "2")
	msg.Metadata.Set(sqs.MetadataMessageID, "orig-id")
	// More metadata than SQS's 10 attributes: the dead-letter copy must still fit.
	msg.Metadata.Set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	msg.Metadata.Set("tracestate", "vendor=x")
	for _, k := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		msg.Metadata.Set("k-"+k, k)
	}
	if err := in.Publish("thingpipe-provisioning", msg); err != nil {
		t.Fatal(err)
	}

	out, err := client.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{
		QueueUrl: q.QueueUrl, WaitTimeSeconds: 5, MaxNumberOfMessages: 1, MessageAttributeNames: []string{"All"},
	})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(out.Messages) != 1 {
		t.Fatalf("dead-letter queue has %d messages, want 1", len(out.Messages))
	}
	m := out.Messages[0]
	if got := aws.ToString(m.Body); got != string(msg.Payload) {
		t.Errorf("body = %q, want the original payload", got)
	}
	attr := func(k string) string { return aws.ToString(m.MessageAttributes[k].StringValue) }
	for k, want := range map[string]string{
		MetadataDLQReason:       "decoding registry event: bad payload: thingName is missing",
		MetadataDLQKind:         KindPermanent,
		MetadataDLQStage:        "provisioning",
		MetadataDLQHandler:      "provisioning",
		MetadataDLQTopic:        "thingpipe-provisioning",
		MetadataDLQReceiveCount: "2",
		"correlation_id":        "3f1c",
	} {
		if got := attr(k); got != want {
			t.Errorf("attribute %s = %q, want %q", k, got, want)
		}
	}
	var orig map[string]string
	if err := json.Unmarshal([]byte(attr(MetadataDLQOriginalMetadata)), &orig); err != nil || orig[sqs.MetadataMessageID] != "orig-id" {
		t.Errorf("original metadata attribute = %q (%v)", attr(MetadataDLQOriginalMetadata), err)
	}
	if n := calls.Get("SQS", "SendMessageBatch"); n != 1 {
		t.Errorf("%d SendMessageBatch calls, want exactly 1 (no retries of a permanent error)", n)
	}
	if !strings.HasPrefix(attr("traceparent"), "00-0af7651916cd43dd8448eb211c80319c-") {
		t.Errorf("traceparent attribute = %q, want the original trace", attr("traceparent"))
	}
	if _, err := client.DeleteMessage(ctx, &awssqs.DeleteMessageInput{QueueUrl: q.QueueUrl, ReceiptHandle: m.ReceiptHandle}); err != nil {
		t.Fatal(err)
	}
}

// ReportAWSErrors marks a service degraded on failures that make the process unable to work, and
// ignores answers about the data.
func TestReportAWSErrorsOnMoto(t *testing.T) {
	ctx := context.Background()
	cfg := awstest.Config(t)
	h := NewHealth(HealthOptions{})
	ReportAWSErrors(&cfg, h)

	// A conditional write that fails is business as usual.
	db := dynamodb.NewFromConfig(cfg)
	table := awstest.Name(t, "thingpipe-alerts")
	if _, err := db.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            &table,
		AttributeDefinitions: []ddbtypes.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: ddbtypes.ScalarAttributeTypeS}},
		KeySchema:            []ddbtypes.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: ddbtypes.KeyTypeHash}},
		BillingMode:          ddbtypes.BillingModePayPerRequest,
	}); err != nil {
		t.Fatal(err)
	}
	_, err := db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:           &table,
		Item:                map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: "dev-1"}},
		ConditionExpression: aws.String("attribute_exists(pk)"),
	})
	var ccf *ddbtypes.ConditionalCheckFailedException
	if !errors.As(err, &ccf) {
		t.Fatalf("PutItem = %v, want ConditionalCheckFailedException", err)
	}
	if r := h.Readiness(ctx); !r.Ready {
		t.Errorf("a failed condition made the process not ready: %+v", r)
	}

	// A missing queue is a broken deployment.
	client := awssqs.NewFromConfig(cfg)
	if _, err := client.GetQueueUrl(ctx, &awssqs.GetQueueUrlInput{QueueName: aws.String(awstest.Name(t, "missing"))}); err == nil {
		t.Fatal("GetQueueUrl of a missing queue succeeded")
	}
	r := h.Readiness(ctx)
	if r.Ready || len(r.Degraded) != 1 || r.Degraded[0].Component != "aws.SQS" || !strings.HasPrefix(r.Degraded[0].Error, "GetQueueUrl: ") {
		t.Errorf("after a missing queue: %+v, want aws.SQS degraded by GetQueueUrl", r)
	}

	// So is an endpoint nobody answers on.
	h2 := NewHealth(HealthOptions{})
	bad := cfg.Copy()
	bad.BaseEndpoint = aws.String("http://127.0.0.1:1")
	bad.RetryMaxAttempts = 1
	ReportAWSErrors(&bad, h2)
	if _, err := dynamodb.NewFromConfig(bad).DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: &table}); err == nil {
		t.Fatal("DescribeTable on a closed port succeeded")
	}
	if r := h2.Readiness(ctx); r.Ready || len(r.Degraded) != 1 || r.Degraded[0].Component != "aws.DynamoDB" {
		t.Errorf("after connection refused: %+v, want aws.DynamoDB degraded", r)
	}
}
