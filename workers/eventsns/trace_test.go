package eventsns

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"go.opentelemetry.io/otel/trace"

	"github.com/thingpipe/thingpipe/events"
)

type captureAPI struct{ in *sns.PublishInput }

func (c *captureAPI) Publish(_ context.Context, in *sns.PublishInput, _ ...func(*sns.Options)) (*sns.PublishOutput, error) {
	c.in = in
	return &sns.PublishOutput{MessageId: aws.String("m-1")}, nil
}

func TestPublishCarriesTraceContext(t *testing.T) {
	traceID, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	spanID, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID, SpanID: spanID, TraceFlags: trace.FlagsSampled})
	ctx := trace.ContextWithSpanContext(context.Background(), sc)

	api := &captureAPI{}
	p, err := New(api, "arn:aws:sns:us-east-1:123456789012:thingpipe-events")
	if err != nil {
		t.Fatal(err)
	}
	env, err := events.New("id-1", "thingpipe/test", time.Unix(0, 0), "dev-1", events.DeviceActivated{ThingName: "dev-1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(ctx, env); err != nil {
		t.Fatal(err)
	}
	got := aws.ToString(api.in.MessageAttributes["traceparent"].StringValue)
	if want := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"; got != want {
		t.Errorf("traceparent attribute = %q, want %q", got, want)
	}

	// Without a trace there is no attribute, not an empty one (SNS refuses empty values).
	if err := p.Publish(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	if _, ok := api.in.MessageAttributes["traceparent"]; ok {
		t.Error("traceparent attribute set without a trace")
	}
}
