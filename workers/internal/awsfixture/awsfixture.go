// Package awsfixture creates the AWS resources the stages' integration tests need on moto, with the
// keys of DESIGN.md, and observes SNS deliveries through an SQS queue subscribed to a topic.
package awsfixture

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/thingpipe/thingpipe/internal/moto"
)

// Index is a global secondary index on one string attribute.
type Index struct{ Name, Key string }

// Table creates a table keyed by the string attribute key, with optional GSIs.
func Table(t testing.TB, cfg aws.Config, name, key string, gsis ...Index) {
	t.Helper()
	attrs := []ddbtypes.AttributeDefinition{{AttributeName: aws.String(key), AttributeType: ddbtypes.ScalarAttributeTypeS}}
	in := &dynamodb.CreateTableInput{
		TableName:   aws.String(name),
		BillingMode: ddbtypes.BillingModePayPerRequest,
		KeySchema:   []ddbtypes.KeySchemaElement{{AttributeName: aws.String(key), KeyType: ddbtypes.KeyTypeHash}},
	}
	for _, g := range gsis {
		attrs = append(attrs, ddbtypes.AttributeDefinition{AttributeName: aws.String(g.Key), AttributeType: ddbtypes.ScalarAttributeTypeS})
		in.GlobalSecondaryIndexes = append(in.GlobalSecondaryIndexes, ddbtypes.GlobalSecondaryIndex{
			IndexName:  aws.String(g.Name),
			KeySchema:  []ddbtypes.KeySchemaElement{{AttributeName: aws.String(g.Key), KeyType: ddbtypes.KeyTypeHash}},
			Projection: &ddbtypes.Projection{ProjectionType: ddbtypes.ProjectionTypeAll},
		})
	}
	in.AttributeDefinitions = attrs
	if _, err := dynamodb.NewFromConfig(cfg).CreateTable(context.Background(), in); err != nil {
		t.Fatalf("creating table %s: %v", name, err)
	}
}

// Bucket creates an S3 bucket.
func Bucket(t testing.TB, client *s3.Client, name string) {
	t.Helper()
	if _, err := client.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("creating bucket %s: %v", name, err)
	}
}

// S3Client returns an S3 client for moto (path-style addressing).
func S3Client(cfg aws.Config) *s3.Client {
	return s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
}

// Topic is an SNS topic with an SQS queue subscribed to it, to observe what was published.
type Topic struct {
	ARN      string
	QueueURL string
	sqs      *sqs.Client
}

// NewTopic creates topic name and a queue subscribed to it.
func NewTopic(t testing.TB, cfg aws.Config, name string) *Topic {
	t.Helper()
	ctx := context.Background()
	snsc, sqsc := sns.NewFromConfig(cfg), sqs.NewFromConfig(cfg)
	top, err := snsc.CreateTopic(ctx, &sns.CreateTopicInput{Name: aws.String(name)})
	if err != nil {
		t.Fatalf("creating topic %s: %v", name, err)
	}
	q, err := sqsc.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name + "-observer")})
	if err != nil {
		t.Fatalf("creating observer queue: %v", err)
	}
	attrs, err := sqsc.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: q.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		t.Fatalf("reading queue ARN: %v", err)
	}
	if _, err := snsc.Subscribe(ctx, &sns.SubscribeInput{TopicArn: top.TopicArn, Protocol: aws.String("sqs"),
		Endpoint: aws.String(attrs.Attributes[string(sqstypes.QueueAttributeNameQueueArn)])}); err != nil {
		t.Fatalf("subscribing queue: %v", err)
	}
	return &Topic{ARN: aws.ToString(top.TopicArn), QueueURL: aws.ToString(q.QueueUrl), sqs: sqsc}
}

// Notification is one SNS message as delivered to SQS.
type Notification struct {
	MessageID         string `json:"MessageId"`
	Subject           string `json:"Subject"`
	Message           string `json:"Message"`
	MessageAttributes map[string]struct {
		Type  string `json:"Type"`
		Value string `json:"Value"`
	} `json:"MessageAttributes"`
}

// Attr returns a message attribute's value.
func (n Notification) Attr(name string) string { return n.MessageAttributes[name].Value }

// Drain receives (and deletes) everything delivered so far: it polls until the queue stays empty for
// quiet.
func (tp *Topic) Drain(t testing.TB, quiet time.Duration) []Notification {
	t.Helper()
	ctx := context.Background()
	var out []Notification
	lastSeen := time.Now()
	for time.Since(lastSeen) < quiet {
		res, err := tp.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(tp.QueueURL), MaxNumberOfMessages: 10, WaitTimeSeconds: 0})
		if err != nil {
			t.Fatalf("receiving from observer queue: %v", err)
		}
		if len(res.Messages) == 0 {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		lastSeen = time.Now()
		for _, m := range res.Messages {
			var n Notification
			if err := json.Unmarshal([]byte(aws.ToString(m.Body)), &n); err != nil {
				t.Fatalf("observer queue body is not an SNS notification: %v: %s", err, aws.ToString(m.Body))
			}
			out = append(out, n)
			if _, err := tp.sqs.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(tp.QueueURL), ReceiptHandle: m.ReceiptHandle}); err != nil {
				t.Fatalf("deleting from observer queue: %v", err)
			}
		}
	}
	return out
}

// String describes a notification for failure messages.
func (n Notification) String() string {
	return fmt.Sprintf("subject=%q attrs=%v message=%s", n.Subject, n.MessageAttributes, n.Message)
}

// SerializeDynamoDB makes clients built from cfg send one DynamoDB request at a time: see
// moto.SerializeDynamoDB for why tests of concurrent workers need it.
func SerializeDynamoDB(cfg *aws.Config) { moto.SerializeDynamoDB(cfg) }

// Expect receives until at least n notifications arrived (or timeout passed), then keeps receiving
// until the queue stays empty for quiet, so duplicates still in flight are counted too.
func (tp *Topic) Expect(t testing.TB, n int, timeout, quiet time.Duration) []Notification {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var out []Notification
	for len(out) < n && time.Now().Before(deadline) {
		out = append(out, tp.Drain(t, 100*time.Millisecond)...)
	}
	return append(out, tp.Drain(t, quiet)...)
}
