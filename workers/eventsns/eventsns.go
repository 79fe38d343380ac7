// Package eventsns publishes thingpipe's outcome events (events.Envelope) to the SNS topic
// thingpipe-events, as JSON with message attributes "type" and "thingName" for subscription filter
// policies (e.g. an app's queue subscribing only to binding.* events).
package eventsns

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sns/types"
	"go.opentelemetry.io/otel/propagation"

	"github.com/thingpipe/thingpipe/events"
)

// DefaultTopic is the topic name from DESIGN.md.
const DefaultTopic = "thingpipe-events"

// API is the part of the SNS client the publisher uses.
type API interface {
	Publish(ctx context.Context, in *sns.PublishInput, opts ...func(*sns.Options)) (*sns.PublishOutput, error)
}

// Publisher publishes envelopes to one topic.
type Publisher struct {
	client   API
	topicARN string
}

// New returns a publisher for topicARN.
func New(client API, topicARN string) (*Publisher, error) {
	if client == nil {
		return nil, errors.New("eventsns: nil SNS client")
	}
	if !strings.HasPrefix(topicARN, "arn:") {
		return nil, fmt.Errorf("eventsns: topic %q is not an ARN (use ResolveTopicARN for a name)", topicARN)
	}
	return &Publisher{client: client, topicARN: topicARN}, nil
}

// Publish sends env. A failure is retryable: the caller returns it and the message is redelivered,
// and the envelope's deterministic id lets consumers drop the duplicate if the first send did land.
func (p *Publisher) Publish(ctx context.Context, env events.Envelope) error {
	body, err := json.Marshal(env)
	if err != nil {
		return fmt.Errorf("encoding %s event: %w", env.Type, err)
	}
	attrs := map[string]types.MessageAttributeValue{
		"type":      {DataType: aws.String("String"), StringValue: aws.String(env.Type)},
		"thingName": {DataType: aws.String("String"), StringValue: aws.String(env.ThingName)},
	}
	// The W3C trace context of the message that caused the event travels on, so an app's consumer
	// can continue the same trace.
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	for k, v := range carrier {
		attrs[k] = types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
	}
	_, err = p.client.Publish(ctx, &sns.PublishInput{
		TopicArn:          aws.String(p.topicARN),
		Message:           aws.String(string(body)),
		MessageAttributes: attrs,
	})
	if err != nil {
		return fmt.Errorf("publishing %s event %s to %s: %w", env.Type, env.ID, p.topicARN, err)
	}
	return nil
}

// ListAPI is the part of the SNS client ResolveTopicARN uses.
type ListAPI interface {
	ListTopics(ctx context.Context, in *sns.ListTopicsInput, opts ...func(*sns.Options)) (*sns.ListTopicsOutput, error)
}

// ResolveTopicARN returns nameOrARN when it is an ARN, else finds the topic of that name in the
// account (needs sns:ListTopics; give an ARN in configuration to avoid it).
func ResolveTopicARN(ctx context.Context, client ListAPI, nameOrARN string) (string, error) {
	if strings.HasPrefix(nameOrARN, "arn:") {
		return nameOrARN, nil
	}
	p := sns.NewListTopicsPaginator(client, &sns.ListTopicsInput{})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return "", fmt.Errorf("finding SNS topic %s: %w", nameOrARN, err)
		}
		for _, t := range out.Topics {
			if arn := aws.ToString(t.TopicArn); strings.HasSuffix(arn, ":"+nameOrARN) {
				return arn, nil
			}
		}
	}
	return "", fmt.Errorf("SNS topic %s not found", nameOrARN)
}

// Recorder is an in-memory publisher for unit tests of stage logic; integration tests use Publisher.
// It is safe for concurrent use.
type Recorder struct {
	mu     sync.Mutex
	events []events.Envelope
	err    error
}

// Publish records env, or fails with the error set by FailWith.
func (r *Recorder) Publish(_ context.Context, env events.Envelope) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	r.events = append(r.events, env)
	return nil
}

// FailWith makes every following Publish fail with err (nil to succeed again).
func (r *Recorder) FailWith(err error) {
	r.mu.Lock()
	r.err = err
	r.mu.Unlock()
}

// Events returns the recorded events.
func (r *Recorder) Events() []events.Envelope {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]events.Envelope(nil), r.events...)
}
