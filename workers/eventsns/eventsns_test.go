package eventsns

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sns"

	"github.com/thingpipe/thingpipe/events"
	"github.com/thingpipe/thingpipe/internal/awstest"
	"github.com/thingpipe/thingpipe/workers/internal/awsfixture"
)

func TestMain(m *testing.M) { os.Exit(awstest.Main(m)) }

func TestPublishAndResolve(t *testing.T) {
	cfg := awstest.Config(t)
	name := awstest.Name(t, DefaultTopic)
	topic := awsfixture.NewTopic(t, cfg, name)
	client := sns.NewFromConfig(cfg)
	arn, err := ResolveTopicARN(context.Background(), client, name)
	if err != nil || arn != topic.ARN {
		t.Fatalf("resolved %q, %v; want %s", arn, err, topic.ARN)
	}
	if _, err := ResolveTopicARN(context.Background(), client, "no-such-topic-here"); err == nil {
		t.Error("resolved a missing topic")
	}
	if _, err := New(client, name); err == nil {
		t.Error("New accepted a name instead of an ARN")
	}
	pub, err := New(client, arn)
	if err != nil {
		t.Fatal(err)
	}
	env, err := events.New(events.DeterministicID("x"), "thingpipe/test", time.Now(), "dev-42",
		&events.BindingRejected{RequestID: "r", ThingName: "dev-42", UserID: "bob", Reason: events.ReasonAlreadyBound})
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	got := topic.Drain(t, 300*time.Millisecond)
	if len(got) != 1 || got[0].Attr("type") != events.TypeBindingRejected || got[0].Attr("thingName") != "dev-42" {
		t.Fatalf("delivered %v", got)
	}
	back, err := events.DecodeEnvelope([]byte(got[0].Message))
	if err != nil || back.ID != env.ID {
		t.Errorf("envelope %+v %v", back, err)
	}
	// A missing topic is a retryable error, not a panic.
	gone, _ := New(client, "arn:aws:sns:us-east-1:123456789012:gone")
	if err := gone.Publish(context.Background(), env); err == nil || events.IsPermanent(err) {
		t.Errorf("publishing to a missing topic: %v", err)
	}
}

func TestRecorder(t *testing.T) {
	var r Recorder
	r.FailWith(errors.New("down"))
	if r.Publish(context.Background(), events.Envelope{}) == nil {
		t.Error("FailWith ignored")
	}
	r.FailWith(nil)
	_ = r.Publish(context.Background(), events.Envelope{ID: "a"})
	if ev := r.Events(); len(ev) != 1 || ev[0].ID != "a" {
		t.Errorf("events %v", ev)
	}
}
