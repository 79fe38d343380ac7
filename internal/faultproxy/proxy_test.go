package faultproxy_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go"

	"github.com/thingpipe/thingpipe/internal/awstest"
	"github.com/thingpipe/thingpipe/internal/faultproxy"
)

func TestMain(m *testing.M) { os.Exit(awstest.Main(m)) }

// via returns an aws.Config pointed at endpoint, with maxAttempts SDK attempts per call (0: the
// SDK's default of 3) and a short backoff so tests stay quick.
func via(t *testing.T, endpoint string, maxAttempts int) aws.Config {
	t.Helper()
	cfg := awstest.Config(t)
	cfg.BaseEndpoint = aws.String(endpoint)
	cfg.Retryer = func() aws.Retryer {
		return retry.NewStandard(func(o *retry.StandardOptions) {
			if maxAttempts > 0 {
				o.MaxAttempts = maxAttempts
			}
			o.MaxBackoff = 50 * time.Millisecond
		})
	}
	return cfg
}

func newProxy(t *testing.T) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.New(awstest.Endpoint(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}

func listQueues(ctx context.Context, c *sqs.Client) error {
	_, err := c.ListQueues(ctx, &sqs.ListQueuesInput{})
	return err
}

// TestProxyPassDropPass: calls work through the proxy, fail with a transport error (no HTTP
// response) while it drops connections, including the one the client keeps alive, and work again
// after Pass.
func TestProxyPassDropPass(t *testing.T) {
	p := newProxy(t)
	c := sqs.NewFromConfig(via(t, p.URL(), 2))
	ctx := t.Context()
	if err := listQueues(ctx, c); err != nil {
		t.Fatalf("through the proxy: %v", err)
	}
	p.Drop()
	err := listQueues(ctx, c)
	if err == nil {
		t.Fatal("call succeeded while the proxy drops connections")
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() != 0 {
		t.Errorf("got an HTTP response (%d) from a dropped connection: %v", re.HTTPStatusCode(), err)
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		t.Errorf("got an API error from a dropped connection: %v", err)
	}
	if st := p.Stats(); st.Dropped < 2 {
		t.Errorf("Stats().Dropped = %d, want at least the open connection and one new one", st.Dropped)
	}
	p.Pass()
	if err := listQueues(ctx, c); err != nil {
		t.Fatalf("after Pass: %v", err)
	}
}

// TestProxyStall: a call on a stalled proxy blocks (a context deadline ends it), and one that is
// waiting when the mode returns to Pass completes, with its held bytes delivered.
func TestProxyStall(t *testing.T) {
	p := newProxy(t)
	c := sqs.NewFromConfig(via(t, p.URL(), 1))
	q := awstest.Name(t, "stall")
	ctx := t.Context()
	if err := listQueues(ctx, c); err != nil { // one connection open before the stall
		t.Fatal(err)
	}
	p.Stall()

	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err := listQueues(short, c)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stalled call with a deadline: got %v, want context.DeadlineExceeded", err)
	}

	done := make(chan error, 1)
	go func() {
		_, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(q)})
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("call returned while stalled: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	p.Pass()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("stalled call after Pass: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("stalled call did not complete after Pass")
	}
	// The held request reached moto: the queue exists.
	if _, err := sqs.NewFromConfig(awstest.Config(t)).GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(q)}); err != nil {
		t.Errorf("queue created through the stalled proxy: %v", err)
	}
	if st := p.Stats(); st.Stalled < 1 {
		t.Errorf("Stats().Stalled = %d, want at least 1", st.Stalled)
	}
}

// TestProxyCloseReleasesStalled: Close returns while connections are stalled, and the blocked
// call fails instead of hanging.
func TestProxyCloseReleasesStalled(t *testing.T) {
	p, err := faultproxy.New(awstest.Endpoint(t))
	if err != nil {
		t.Fatal(err)
	}
	c := sqs.NewFromConfig(via(t, p.URL(), 1))
	p.Stall()
	done := make(chan error, 1)
	go func() { done <- listQueues(t.Context(), c) }()
	time.Sleep(200 * time.Millisecond)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done: // an error, or a late answer: either way not a hang
	case <-time.After(10 * time.Second):
		t.Fatal("call still blocked after Close")
	}
}

func TestNewBadTarget(t *testing.T) {
	for _, target := range []string{"", "no-port", "http://host-without-port", "://"} {
		if _, err := faultproxy.New(target); err == nil {
			t.Errorf("New(%q): no error", target)
		}
	}
}

func TestService(t *testing.T) {
	for _, tc := range []struct {
		name   string
		header map[string]string
		query  string
		want   string
	}{
		{"sigv4 scope", map[string]string{"Authorization": "AWS4-HMAC-SHA256 Credential=AKID/20261123/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=ab"}, "", "sqs"},
		{"sigv4 scope s3", map[string]string{"Authorization": "AWS4-HMAC-SHA256 Credential=AKID/20261123/us-east-1/s3/aws4_request,SignedHeaders=host,Signature=ab"}, "", "s3"},
		{"presigned", nil, "X-Amz-Credential=AKID%2F20261123%2Fus-east-1%2Fs3%2Faws4_request", "s3"},
		{"target dynamodb", map[string]string{"X-Amz-Target": "DynamoDB_20120810.PutItem"}, "", "dynamodb"},
		{"target kinesis", map[string]string{"X-Amz-Target": "Kinesis_20131202.GetRecords"}, "", "kinesis"},
		{"target sqs", map[string]string{"X-Amz-Target": "AmazonSQS.ReceiveMessage"}, "", "sqs"},
		{"malformed scope", map[string]string{"Authorization": "AWS4-HMAC-SHA256 Credential=AKID/x"}, "", "unknown"},
		{"nothing", nil, "", "unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/?"+tc.query, strings.NewReader(""))
			for k, v := range tc.header {
				r.Header.Set(k, v)
			}
			if got := faultproxy.Service(r); got != tc.want {
				t.Errorf("Service = %q, want %q", got, tc.want)
			}
		})
	}
}

// calls is one cheap call per service, each needing no resource.
var calls = []struct {
	service, code string
	call          func(context.Context, aws.Config) error
}{
	{"sqs", "RequestThrottled", func(ctx context.Context, cfg aws.Config) error {
		return listQueues(ctx, sqs.NewFromConfig(cfg))
	}},
	{"sns", "Throttling", func(ctx context.Context, cfg aws.Config) error {
		_, err := sns.NewFromConfig(cfg).ListTopics(ctx, &sns.ListTopicsInput{})
		return err
	}},
	{"s3", "SlowDown", func(ctx context.Context, cfg aws.Config) error {
		_, err := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true }).ListBuckets(ctx, &s3.ListBucketsInput{})
		return err
	}},
	{"dynamodb", "ProvisionedThroughputExceededException", func(ctx context.Context, cfg aws.Config) error {
		_, err := dynamodb.NewFromConfig(cfg).ListTables(ctx, &dynamodb.ListTablesInput{})
		return err
	}},
	{"kinesis", "ProvisionedThroughputExceededException", func(ctx context.Context, cfg aws.Config) error {
		_, err := kinesis.NewFromConfig(cfg).ListStreams(ctx, &kinesis.ListStreamsInput{})
		return err
	}},
}

func newThrottler(t *testing.T, target string) *faultproxy.Throttler {
	t.Helper()
	th, err := faultproxy.NewThrottler(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := th.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return th
}

// TestThrottleErrorsAreThrottles: with every request throttled and one attempt, each service's
// real client returns its protocol's throttling code, and the SDK's retryer classifies it as a
// throttle (so it backs off and spends retry quota as it would against AWS).
func TestThrottleErrorsAreThrottles(t *testing.T) {
	th := newThrottler(t, awstest.Endpoint(t))
	th.Throttle(1)
	cfg := via(t, th.URL(), 1)
	for _, c := range calls {
		t.Run(c.service, func(t *testing.T) {
			err := c.call(t.Context(), cfg)
			var ae smithy.APIError
			if !errors.As(err, &ae) {
				t.Fatalf("got %v, want an API error", err)
			}
			if ae.ErrorCode() != c.code {
				t.Errorf("error code %q, want %q (%v)", ae.ErrorCode(), c.code, err)
			}
			if got := retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(err); got != aws.TrueTernary {
				t.Errorf("SDK throttle classification = %v, want true (%v)", got, err)
			}
			if got := retry.IsErrorRetryables(retry.DefaultRetryables).IsErrorRetryable(err); got != aws.TrueTernary {
				t.Errorf("SDK retryable classification = %v, want true (%v)", got, err)
			}
			if th.Stats().Throttled[c.service] == 0 {
				t.Errorf("Stats().Throttled[%s] = 0", c.service)
			}
		})
	}
}

// TestThrottleShareRetried: with half of each service's requests throttled, the SDK's own retries
// get every call through, and exactly half the requests were throttled.
func TestThrottleShareRetried(t *testing.T) {
	th := newThrottler(t, awstest.Endpoint(t))
	th.Throttle(0.5)
	cfg := via(t, th.URL(), 0)
	for _, c := range calls {
		for i := range 4 {
			if err := c.call(t.Context(), cfg); err != nil {
				t.Fatalf("%s call %d with retries: %v", c.service, i, err)
			}
		}
	}
	st := th.Stats()
	for _, c := range calls {
		if n, thr := st.Requests[c.service], st.Throttled[c.service]; thr == 0 || thr*2 != n {
			t.Errorf("%s: %d of %d requests throttled, want half", c.service, thr, n)
		}
	}
	th.Pass()
	for _, c := range calls {
		if err := c.call(t.Context(), via(t, th.URL(), 1)); err != nil {
			t.Errorf("%s after Pass: %v", c.service, err)
		}
	}
}

// TestThrottleSomeServices: only the named services are throttled.
func TestThrottleSomeServices(t *testing.T) {
	th := newThrottler(t, awstest.Endpoint(t))
	th.Throttle(1, "S3")
	cfg := via(t, th.URL(), 1)
	for _, c := range calls {
		err := c.call(t.Context(), cfg)
		if (c.service == "s3") != (err != nil) {
			t.Errorf("%s: err = %v; only s3 should be throttled", c.service, err)
		}
	}
}

// TestChained: Throttler in front of Proxy; dropping at the TCP proxy reaches the client as a
// dropped connection, not as an HTTP answer.
func TestChained(t *testing.T) {
	p := newProxy(t)
	th := newThrottler(t, p.URL())
	c := sqs.NewFromConfig(via(t, th.URL(), 1))
	if err := listQueues(t.Context(), c); err != nil {
		t.Fatalf("through both: %v", err)
	}
	p.Drop()
	err := listQueues(t.Context(), c)
	var re *awshttp.ResponseError
	if err == nil || (errors.As(err, &re) && re.HTTPStatusCode() != 0) {
		t.Errorf("dropped behind the throttler: got %v, want a transport error", err)
	}
	p.Pass()
	if err := listQueues(t.Context(), c); err != nil {
		t.Errorf("after Pass: %v", err)
	}
}

// TestProxyStallThenDrop: a request held by a stall is discarded when the proxy then drops: the
// client gets an error and the target never sees the request.
func TestProxyStallThenDrop(t *testing.T) {
	p := newProxy(t)
	c := sqs.NewFromConfig(via(t, p.URL(), 1))
	q := awstest.Name(t, "held")
	p.Stall()
	done := make(chan error, 1)
	go func() {
		_, err := c.CreateQueue(t.Context(), &sqs.CreateQueueInput{QueueName: aws.String(q)})
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	p.Drop()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("held call succeeded after Drop")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("held call still blocked after Drop")
	}
	p.Pass()
	if _, err := sqs.NewFromConfig(awstest.Config(t)).GetQueueUrl(t.Context(), &sqs.GetQueueUrlInput{QueueName: aws.String(q)}); err == nil {
		t.Error("the request held by the stall reached the target after Drop")
	}
}
