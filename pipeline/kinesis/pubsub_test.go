package kinesis

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/thingpipe/thingpipe/internal/awstest"
)

// TestUniversalPubSub runs watermill's universal Pub/Sub suite against moto. Streams have two
// shards, so order is only per shard (GuaranteedOrder false). A consumer group is named after the
// test, so every subscriber of one test shares the group (TestConcurrentSubscribe splits shards
// between ten workers, TestContinueAfterSubscribeClose resumes from checkpoints), except in
// TestNewSubscriberReceivesOldMessages, whose point is that a new group reads the stream from
// TRIM_HORIZON.
func TestUniversalPubSub(t *testing.T) {
	cfg := awstest.Config(t)
	kin := kinesis.NewFromConfig(cfg)
	ddb := dynamodb.NewFromConfig(cfg)
	table := awstest.Name(t, "suite-leases")
	if err := ensureLeaseTable(context.Background(), ddb, table); err != nil {
		t.Fatal(err)
	}
	newPubSub := func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
		pub, err := NewPublisher(PublisherConfig{Client: kin, Logger: quietLogger(), CreateStream: true, ShardCount: 2})
		if err != nil {
			t.Fatal(err)
		}
		sub, err := NewSubscriber(SubscriberConfig{
			Kinesis: kin, DynamoDB: ddb, Logger: quietLogger(),
			ConsumerGroup: group, LeaseTable: table, CreateStream: true, ShardCount: 2,
			FailoverTime: 2 * time.Second, RenewInterval: 500 * time.Millisecond, TakeInterval: 300 * time.Millisecond,
			ShardSyncInterval: time.Second, CheckpointInterval: 100 * time.Millisecond,
			PollInterval: 50 * time.Millisecond, IdleBackoffMax: 200 * time.Millisecond,
			NackResendDelay: 10 * time.Millisecond, DrainTimeout: time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		return pub, sub
	}
	tests.TestPubSub(t,
		tests.Features{
			ConsumerGroups:                   true,
			ExactlyOnceDelivery:              false,
			GuaranteedOrder:                  false, // per shard only
			Persistent:                       true,
			NewSubscriberReceivesOldMessages: true,
			ForceShort:                       true,
			GenerateTopicFunc: func(tctx tests.TestContext) string {
				return "suite-" + string(tctx.TestID)
			},
		},
		func(t *testing.T) (message.Publisher, message.Subscriber) {
			group := strings.ReplaceAll(t.Name(), "/", "_")
			if strings.Contains(t.Name(), "TestNewSubscriberReceivesOldMessages") {
				group += "_" + watermill.NewShortUUID()
			}
			return newPubSub(t, group)
		},
		newPubSub,
	)
}
