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

	"github.com/thingpipe/thingpipe/internal/apicalls"
	"github.com/thingpipe/thingpipe/internal/awstest"
	"github.com/thingpipe/thingpipe/pipeline/sqs"
)

func mainWithMoto(m *testing.M) int { return awstest.Main(m) }

// sqsPublisher is the smallest SQS publisher the test needs: topic = queue name, body = payload,
// every metadata key a String message attribute. (pipeline/sqs's Publisher replaces it once merged.)
type sqsPublisher struct {
	client *awssqs.Client
	mu     sync.Mutex
	urls   map[string]string
}

func (p *sqsPublisher) Publish(topic string, msgs ...*message.Message) error {
	for _, m := range msgs {
		ctx := m.Context()
		p.mu.Lock()
		url, ok := p.urls[topic]
		p.mu.Unlock()
		if !ok {
			out, err := p.client.GetQueueUrl(ctx, &awssqs.GetQueueUrlInput{QueueName: &topic})
			if err != nil {
				return fmt.Errorf("resolving queue %s: %w", topic, err)
			}
			url = *out.QueueUrl
			p.mu.Lock()
			p.urls[topic] = url
			p.mu.Unlock()
		}
		attrs := map[string]sqstypes.MessageAttributeValue{}
		for k, v := range m.Metadata {
			attrs[k] = sqstypes.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
		}
		if _, err := p.client.SendMessage(ctx, &awssqs.SendMessageInput{
			QueueUrl: &url, MessageBody: aws.String(string(m.Payload)), MessageAttributes: attrs,
		}); err != nil {
			return fmt.Errorf("sending to %s: %w", topic, err)
		}
	}
	return nil
}

func (p *sqsPublisher) Close() error { return nil }

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
		DeadLetter: &sqsPublisher{client: client, urls: map[string]string{}}, DeadLetterTopic: dlqName,
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
	if n := calls.Get("SQS", "SendMessage"); n != 1 {
		t.Errorf("%d SendMessage calls, want exactly 1 (no retries of a permanent error)", n)
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
