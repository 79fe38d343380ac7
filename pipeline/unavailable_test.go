package pipeline

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/thingpipe/thingpipe/internal/awstest"
	"github.com/thingpipe/thingpipe/internal/faultproxy"
	"github.com/thingpipe/thingpipe/pipeline/sqs"
)

// responseError builds the error the SDK returns for an answer with status and, if code is set,
// an API error code.
func responseError(status int, code string) error {
	var inner error = errors.New("no body")
	if code != "" {
		inner = &smithy.GenericAPIError{Code: code, Message: "m"}
	}
	return &awshttp.ResponseError{ResponseError: &smithyhttp.ResponseError{
		Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}}, Err: inner,
	}}
}

func TestIsUnavailable(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"no response", responseError(0, ""), true},
		{"503", responseError(503, "ServiceUnavailable"), true},
		{"500", responseError(500, "InternalError"), true},
		{"429", responseError(429, "TooManyRequestsException"), true},
		{"throttled, retries exhausted", &retry.MaxAttemptsError{Attempt: 3, Err: responseError(400, "ThrottlingException")}, true},
		{"dynamodb throughput", responseError(400, "ProvisionedThroughputExceededException"), true},
		{"s3 slow down", responseError(503, "SlowDown"), true},
		{"request timeout code", responseError(400, "RequestTimeout"), true},
		{"quota exceeded", fmt.Errorf("failed to get rate limit token, %w", ratelimit.QuotaExceededError{Available: 1, Requested: 5}), true},
		{"send failed", &smithyhttp.RequestSendError{Err: errors.New("connection reset by peer")}, true},
		{"net error", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}, true},
		{"deadline", fmt.Errorf("put: %w", context.DeadlineExceeded), true},
		{"canceled", fmt.Errorf("put: %w", context.Canceled), false},
		{"condition failed", responseError(400, "ConditionalCheckFailedException"), false},
		{"validation", responseError(400, "ValidationException"), false},
		{"access denied", responseError(403, "AccessDenied"), false},
		{"plain error", errors.New("device not active yet"), false},
		{"permanent", Permanent(errors.New("bad payload")), false},
		{"wrapped by workers and retry", &RetriesExhaustedError{Attempts: 6, Err: fmt.Errorf("archiving shard/1: %w", responseError(0, ""))}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := IsUnavailable(tc.err); got != tc.want {
				t.Errorf("IsUnavailable(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

// TestIsUnavailableRealSDKErrors: the errors the real SDK returns against moto through a fault
// proxy, wrapped the way workers wrap them.
func TestIsUnavailableRealSDKErrors(t *testing.T) {
	ctx := t.Context()
	cfg := awstest.Config(t)
	cfg.RetryMaxAttempts = 2
	table := awstest.Name(t, "unavail")
	db := dynamodb.NewFromConfig(cfg)
	if _, err := db.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            &table,
		AttributeDefinitions: []ddbtypes.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: ddbtypes.ScalarAttributeTypeS}},
		KeySchema:            []ddbtypes.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: ddbtypes.KeyTypeHash}},
		BillingMode:          ddbtypes.BillingModePayPerRequest,
	}); err != nil {
		t.Fatal(err)
	}
	put := func(c *dynamodb.Client, cond string) error {
		in := &dynamodb.PutItemInput{TableName: &table, Item: map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: "x"}}}
		if cond != "" {
			in.ConditionExpression = aws.String(cond)
		}
		_, err := c.PutItem(ctx, in)
		return fmt.Errorf("storing state: %w", err)
	}

	proxy, err := faultproxy.New(awstest.Endpoint(t))
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	th, err := faultproxy.NewThrottler(awstest.Endpoint(t))
	if err != nil {
		t.Fatal(err)
	}
	defer th.Close()
	th.Throttle(1)
	via := func(endpoint string) aws.Config {
		c := cfg.Copy()
		c.BaseEndpoint = aws.String(endpoint)
		return c
	}

	proxy.Drop()
	dropped := put(dynamodb.NewFromConfig(via(proxy.URL())), "")
	proxy.Pass()
	proxy.Stall()
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, stalledErr := awssqs.NewFromConfig(via(proxy.URL())).ListQueues(short, &awssqs.ListQueuesInput{})
	cancel()
	proxy.Pass()
	// A stalled connection under a response timeout (what thingpipe run's clients have).
	timed := via(proxy.URL())
	timed.HTTPClient = awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) { tr.ResponseHeaderTimeout = 200 * time.Millisecond })
	timed.RetryMaxAttempts = 1
	proxy.Stall()
	_, headerTimeout := awssqs.NewFromConfig(timed).ListQueues(ctx, &awssqs.ListQueuesInput{})
	proxy.Pass()

	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"dropped connection", dropped, true},
		{"stalled past the caller's deadline", stalledErr, true},
		{"stalled past the response timeout", headerTimeout, true},
		{"dynamodb throttled", put(dynamodb.NewFromConfig(via(th.URL())), ""), true},
		{"s3 throttled", func() error {
			_, err := s3.NewFromConfig(via(th.URL()), func(o *s3.Options) { o.UsePathStyle = true }).ListBuckets(ctx, &s3.ListBucketsInput{})
			return err
		}(), true},
		{"sqs throttled", func() error {
			_, err := awssqs.NewFromConfig(via(th.URL())).ListQueues(ctx, &awssqs.ListQueuesInput{})
			return err
		}(), true},
		{"condition failed", put(db, "attribute_exists(nope)"), false},
		{"missing table", func() error {
			_, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(awstest.Name(t, "missing"))})
			return err
		}(), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.err == nil {
				t.Fatal("the call succeeded")
			}
			if got := IsUnavailable(tc.err); got != tc.want {
				t.Errorf("IsUnavailable(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

// claimedElsewhere stands for workers/claim.ErrClaimedElsewhere (pipeline does not import workers).
type claimedElsewhere struct{}

func (claimedElsewhere) Error() string         { return "notification is being sent by another worker" }
func (claimedElsewhere) WaitingOnOthers() bool { return true }

// TestRetriesExhaustedByOutageAreNacked: a Kinesis-style stage (dead_letter on exhausted retries)
// whose retries ran out because a dependency was unreachable hands the message back instead of
// dead-lettering it, and the redelivery succeeds once the dependency is back.
func TestRetriesExhaustedByOutageAreNacked(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"connection reset", fmt.Errorf("archiving shard/7: %w", &smithyhttp.RequestSendError{Err: errors.New("read: connection reset by peer")})},
		{"throttled", fmt.Errorf("storing alert state: %w", &retry.MaxAttemptsError{Attempt: 3, Err: responseError(400, "ProvisionedThroughputExceededException")})},
		{"5xx", fmt.Errorf("publishing: %w", responseError(503, "ServiceUnavailable"))},
		// Another worker's live claim on an alert email: the message waits, it is not poison.
		{"claimed elsewhere", fmt.Errorf("alerting dev-1#overheating: %w", claimedElsewhere{})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkNoLeaks(t)
			var calls atomic.Int32
			f := newFixture(t, func(*message.Message) error {
				if calls.Add(1) <= 4 { // the whole first delivery fails (1 + 3 retries)
					return tc.err
				}
				return nil
			}, nil)
			f.start()
			f.publish("m", nil) // gochannel redelivers a nacked message at once
			f.waitCounts(KindRetriesExhausted, counts{Received: 2, Nacked: 1, Acked: 1, Retries: 3})
			f.noDLQ()
		})
	}
}

// TestReadinessAnswersWhileACheckHangs: a check that ignores its context (a call queued behind a
// stalled one) does not hold /readyz: the round ends at the check timeout and names it.
func TestReadinessAnswersWhileACheckHangs(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	h := NewHealth(HealthOptions{CheckTimeout: 100 * time.Millisecond})
	h.AddCheck("hangs", func(context.Context) error { <-release; return nil })
	h.AddCheck("fine", func(context.Context) error { return nil })
	done := make(chan Readiness, 1)
	go func() { done <- h.Readiness(t.Context()) }()
	select {
	case r := <-done:
		if r.Ready || len(r.Degraded) != 1 || r.Degraded[0].Component != "check:hangs" || !strings.Contains(r.Degraded[0].Error, "no answer within 100ms") {
			t.Errorf("Readiness = %+v, want check:hangs degraded with no answer", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Readiness blocked on a hanging check")
	}
}

// TestStalledAndThrottledCallsDegrade: through the real SDK, a call on a stalled connection under
// AWSHTTPClient's response timeout fails (instead of hanging) and makes its service degraded, and
// so does throttling the SDK's retries did not get through; throttling they got through does not.
func TestStalledAndThrottledCallsDegrade(t *testing.T) {
	ctx := t.Context()
	proxy, err := faultproxy.New(awstest.Endpoint(t))
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	th, err := faultproxy.NewThrottler(awstest.Endpoint(t))
	if err != nil {
		t.Fatal(err)
	}
	defer th.Close()

	t.Run("stalled", func(t *testing.T) {
		h := NewHealth(HealthOptions{})
		cfg := awstest.Config(t)
		cfg.BaseEndpoint = aws.String(proxy.URL())
		cfg.HTTPClient = AWSHTTPClient(AWSConfig{ResponseTimeout: Duration(300 * time.Millisecond)})
		cfg.RetryMaxAttempts = 2
		ReportAWSErrors(&cfg, h)
		proxy.Stall()
		defer proxy.Pass()

		// A call whose first attempt stalls and whose retry gets through: the stalled attempt is
		// reported at once, though the call succeeds.
		heal := time.AfterFunc(500*time.Millisecond, proxy.Pass)
		if _, err := awssqs.NewFromConfig(cfg).ListQueues(ctx, &awssqs.ListQueuesInput{}); err != nil {
			t.Fatalf("call whose stall healed: %v", err)
		}
		heal.Stop()
		if r := h.Readiness(ctx); r.Ready || len(r.Degraded) != 1 || r.Degraded[0].Component != "aws.SQS" || !strings.Contains(r.Degraded[0].Error, "no answer in time") {
			t.Errorf("after a stalled attempt: %+v, want aws.SQS degraded", r)
		}
		proxy.Stall()
		h = NewHealth(HealthOptions{})
		ReportAWSErrors(&cfg, h)
		done := make(chan error, 1)
		go func() {
			_, err := awssqs.NewFromConfig(cfg).ListQueues(ctx, &awssqs.ListQueuesInput{})
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || !IsUnavailable(err) {
				t.Fatalf("stalled call: %v, want an unavailable error", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("stalled call still waiting: no response timeout")
		}
		if r := h.Readiness(ctx); r.Ready || len(r.Degraded) != 1 || r.Degraded[0].Component != "aws.SQS" {
			t.Errorf("after a stalled call: %+v, want aws.SQS degraded", r)
		}
	})
	for _, tc := range []struct {
		name     string
		share    float64
		degraded bool
	}{
		{"throttled past the SDK's retries", 1, true},
		{"throttled, retried through", 0.5, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := NewHealth(HealthOptions{})
			cfg := awstest.Config(t)
			cfg.BaseEndpoint = aws.String(th.URL())
			cfg.Retryer = func() aws.Retryer {
				return retry.NewStandard(func(o *retry.StandardOptions) { o.MaxBackoff = 20 * time.Millisecond })
			}
			ReportAWSErrors(&cfg, h)
			th.Throttle(tc.share)
			defer th.Pass()
			_, err := dynamodb.NewFromConfig(cfg).ListTables(ctx, &dynamodb.ListTablesInput{})
			if (err != nil) != tc.degraded {
				t.Fatalf("ListTables: %v", err)
			}
			r := h.Readiness(ctx)
			if got := len(r.Degraded) == 1 && r.Degraded[0].Component == "aws.DynamoDB"; got != tc.degraded {
				t.Errorf("Readiness = %+v, want aws.DynamoDB degraded: %v", r, tc.degraded)
			}
		})
	}
}

// TestMaxReceivesExcusesOutageNacks: SQS counts every receive, so a good message received again and
// again while a dependency is down must not be dead-lettered as "received too often"; deliveries
// nacked for other reasons still count.
func TestMaxReceivesExcusesOutageNacks(t *testing.T) {
	dlq := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 10}, nil)
	defer dlq.Close()
	dead, err := dlq.Subscribe(t.Context(), "dlq")
	if err != nil {
		t.Fatal(err)
	}
	r := &stageRunner{
		stage:       Stage{Name: stageName, DeadLetter: dlq, DeadLetterTopic: "dlq", Failure: FailurePolicy{MaxReceives: 2, NackOnExhausted: true}},
		log:         testLogger(t),
		outageNacks: newOutageNacks(100),
	}
	down := &RetriesExhaustedError{Attempts: 6, Err: fmt.Errorf("storing device: %w", &smithyhttp.RequestSendError{Err: errors.New("connection reset by peer")})}
	notYet := &RetriesExhaustedError{Attempts: 6, Err: errors.New("device not active yet")}
	var handled []string
	deliver := func(id string, receives int, result error) error {
		msg := message.NewMessage(id+"-uuid", []byte(id))
		msg.Metadata.Set(sqs.MetadataMessageID, id)
		msg.Metadata.Set(sqs.MetadataReceiveCount, fmt.Sprint(receives))
		_, err := r.poison(func(m *message.Message) ([]*message.Message, error) {
			handled = append(handled, fmt.Sprintf("%s#%d", id, receives))
			return nil, result
		})(msg)
		return err
	}
	deadLettered := func() string {
		select {
		case m := <-dead:
			m.Ack()
			return string(m.Payload) + ": " + m.Metadata.Get(MetadataDLQReason)
		case <-time.After(100 * time.Millisecond):
			return ""
		}
	}

	// "a": two deliveries during an outage, then the third (over max_receives 2) is handled.
	for rc := 1; rc <= 2; rc++ {
		if err := deliver("a", rc, down); err == nil {
			t.Fatalf("a#%d: acked, want nacked", rc)
		}
	}
	if err := deliver("a", 3, nil); err != nil {
		t.Fatalf("a#3: %v", err)
	}
	if d := deadLettered(); d != "" {
		t.Errorf("dead-lettered: %s", d)
	}
	if n := r.outageNacks.len(); n != 0 {
		t.Errorf("%d ids remembered after the message was acked, want 0", n)
	}
	// "b": nacked for a reason of its own: the receives count.
	for rc := 1; rc <= 2; rc++ {
		if err := deliver("b", rc, notYet); err == nil {
			t.Fatalf("b#%d: acked, want nacked", rc)
		}
	}
	if err := deliver("b", 3, nil); err != nil {
		t.Fatalf("b#3: dead-letter publish: %v", err)
	}
	if d, want := deadLettered(), "b: receive count 3 exceeds max_receives 2"; d != want {
		t.Errorf("dead-lettered %q, want %q", d, want)
	}
	// "c": one outage nack out of four receives: still over the limit, and the reason says so.
	if err := deliver("c", 1, down); err == nil {
		t.Fatal("c#1 acked")
	}
	if err := deliver("c", 4, nil); err != nil {
		t.Fatal(err)
	}
	if d, want := deadLettered(), "c: receive count 4 exceeds max_receives 2 (1 deliveries handed back while a dependency was unavailable not counted)"; d != want {
		t.Errorf("dead-lettered %q, want %q", d, want)
	}
	if want := []string{"a#1", "a#2", "a#3", "b#1", "b#2", "c#1"}; !slices.Equal(handled, want) {
		t.Errorf("handler ran for %v, want %v", handled, want)
	}
}

func TestOutageNacksBounded(t *testing.T) {
	o := newOutageNacks(3)
	for i := range 10 {
		o.add(fmt.Sprint(i))
		o.add(fmt.Sprint(i))
		if i%2 == 0 {
			o.forget(fmt.Sprint(i))
		}
	}
	if n := o.len(); n > 3 {
		t.Errorf("%d ids remembered, limit 3", n)
	}
	if got := o.get("9"); got != 2 {
		t.Errorf("newest id counted %d, want 2", got)
	}
	if got := o.get("1"); got != 0 {
		t.Errorf("oldest id still counted (%d)", got)
	}
	if len(o.order) > 6 {
		t.Errorf("order holds %d ids, want at most twice the limit", len(o.order))
	}
}
