package apicalls_test

import (
	"context"
	"os"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/thingpipe/thingpipe/internal/apicalls"
	"github.com/thingpipe/thingpipe/internal/awstest"
)

func TestMain(m *testing.M) { os.Exit(awstest.Main(m)) }

func TestCountsEachOperation(t *testing.T) {
	cfg := awstest.Config(t)
	calls := apicalls.New()
	calls.Instrument(&cfg)
	client := sqs.NewFromConfig(cfg)
	ctx := context.Background()
	q, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(awstest.Name(t, "calls"))})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: q.QueueUrl, MessageBody: aws.String("x")}); err != nil {
			t.Fatal(err)
		}
	}
	if got := calls.Get("SQS", "SendMessage"); got != 3 {
		t.Errorf("SendMessage count = %d, want 3", got)
	}
	if got := calls.Get("SQS", "CreateQueue"); got != 1 {
		t.Errorf("CreateQueue count = %d, want 1", got)
	}
	if got := calls.Service("SQS"); got != 4 {
		t.Errorf("SQS total = %d, want 4 (snapshot %v)", got, calls.Snapshot())
	}
	calls.Reset()
	if got := calls.Service("SQS"); got != 0 {
		t.Errorf("after Reset, SQS total = %d", got)
	}
}
