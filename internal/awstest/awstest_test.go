package awstest_test

import (
	"context"
	"os"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/thingpipe/thingpipe/internal/awstest"
)

func TestMain(m *testing.M) { os.Exit(awstest.Main(m)) }

func TestSDKReachesMoto(t *testing.T) {
	client := sqs.NewFromConfig(awstest.Config(t))
	name := awstest.Name(t, "awstest")
	ctx := context.Background()
	created, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)})
	if err != nil {
		t.Fatalf("CreateQueue against moto: %v", err)
	}
	got, err := client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
	if err != nil {
		t.Fatalf("GetQueueUrl: %v", err)
	}
	if aws.ToString(got.QueueUrl) != aws.ToString(created.QueueUrl) {
		t.Fatalf("queue url %q, want %q", aws.ToString(got.QueueUrl), aws.ToString(created.QueueUrl))
	}
}
