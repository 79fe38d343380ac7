package sqs

import (
	"context"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
)

// The universal suite runs in its short mode (ForceShort): 100 messages and 10 subscribers instead
// of 5,000 and 50, because moto's SQS slows down as queues deepen (see docs/sqs.md).
func universalConstructor(client testClientAPI, subCfg SubscriberConfig, pubCfg PublisherConfig) tests.PubSubConstructor {
	subCfg.Client = client
	pubCfg.Client = client
	pubCfg.Logger = quietLogger()
	return func(t *testing.T) (message.Publisher, message.Subscriber) {
		sub, err := NewSubscriber(subCfg)
		if err != nil {
			t.Fatal(err)
		}
		pub, err := NewPublisher(pubCfg)
		if err != nil {
			t.Fatal(err)
		}
		return pub, sub
	}
}

type testClientAPI interface {
	SubscriberAPI
	PublisherAPI
}

func TestUniversalStandardQueue(t *testing.T) {
	skipUniversalInShortMode(t)
	t.Parallel()
	tests.TestPubSub(t, tests.Features{
		ConsumerGroups:      false, // a queue is one group; fan-out is SNS's job
		ExactlyOnceDelivery: false,
		GuaranteedOrder:     false, // standard queues do not keep order
		Persistent:          true,
		ForceShort:          true,
	}, universalConstructor(testClient(t), fastConfig(nil), PublisherConfig{}), nil)
}

// fifoTopics appends ".fifo" to every topic, since the suite derives topics by appending suffixes.
type fifoPub struct{ message.Publisher }

func (p fifoPub) Publish(topic string, msgs ...*message.Message) error {
	return p.Publisher.Publish(topic+".fifo", msgs...)
}

type fifoSub struct{ *Subscriber }

func (s fifoSub) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	return s.Subscriber.Subscribe(ctx, topic+".fifo")
}
func (s fifoSub) SubscribeInitialize(topic string) error {
	return s.Subscriber.SubscribeInitialize(topic + ".fifo")
}

func TestUniversalFIFOQueue(t *testing.T) {
	skipUniversalInShortMode(t)
	t.Parallel()
	// moto's ReceiveMessage is not atomic: concurrent receives can both get messages of one group,
	// which SQS never does. So each subscriber has one receiver and the ordering test runs with one
	// subscriber (on SQS, any number keeps a group's order).
	subCfg := fastConfig(nil)
	subCfg.Receivers = 1
	construct := universalConstructor(testClient(t), subCfg, PublisherConfig{DefaultMessageGroupID: "all"})
	tests.TestPubSub(t, tests.Features{
		ConsumerGroups:                      false,
		ExactlyOnceDelivery:                 false,
		GuaranteedOrder:                     true, // one message group: SQS and the subscriber keep its order
		GuaranteedOrderWithSingleSubscriber: true,
		Persistent:                          true,
		ForceShort:                          true,
	}, func(t *testing.T) (message.Publisher, message.Subscriber) {
		pub, sub := construct(t)
		return fifoPub{pub}, fifoSub{sub.(*Subscriber)}
	}, nil)
}

// skipUniversalInShortMode keeps `go test -short` to the package's own tests (about half a minute);
// the universal suite takes a minute or two on moto, mostly in FIFO waits (docs/sqs.md).
func skipUniversalInShortMode(t *testing.T) {
	if testing.Short() {
		t.Skip("watermill's universal suite is skipped in -short mode")
	}
}
