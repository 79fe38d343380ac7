package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/thingpipe/thingpipe/internal/awstest"
	"github.com/thingpipe/thingpipe/internal/faultproxy"
	"github.com/thingpipe/thingpipe/pipeline"
)

// The outage tests put a fault proxy between `thingpipe run` (all four stages in one process) and
// moto while telemetry and control messages flow, then check that the pipeline noticed (/readyz
// degraded, naming the AWS service), recovered by itself (/readyz ready again), lost nothing,
// dead-lettered nothing, and still stops cleanly. The test driver talks to moto directly.

// outage is one fault: start begins it, end heals it.
type outage struct {
	name       string
	env        []string // the process's endpoint(s): AWS_ENDPOINT_URL=<proxy> ..., other settings
	start, end func()
	length     time.Duration
	// controlAt is when the control messages are sent, from the start of the fault (default
	// -200ms: just before it, so some are in flight when it starts).
	controlAt time.Duration
}

// degradedWindow is THINGPIPE_READINESS__DEGRADED_WINDOW in these tests: short, so /readyz turns
// ready again soon after the fault ends.
const degradedWindow = 3 * time.Second

// TestOutageDroppedConnections: every AWS service unreachable (connections reset) for 12 s; SQS
// comes back after 4 s, so for 8 s the dead-letter queues are reachable while DynamoDB, Kinesis,
// S3 and SNS are not: a stage that dead-letters good messages because a dependency is down would
// succeed in doing so here. The control messages arrive when SQS is back and DynamoDB is not, and
// the provisioning stage's limits are scaled down with the outage (max_receives 2, 2 s of retries
// per delivery, nack backoff from 500 ms): its messages are received again and again while they
// cannot be handled, and must not be dead-lettered as "received too often".
func TestOutageDroppedConnections(t *testing.T) {
	e := setup(t)
	others, err := faultproxy.New(awstest.Endpoint(t))
	if err != nil {
		t.Fatal(err)
	}
	defer others.Close()
	sqsProxy, err := faultproxy.New(awstest.Endpoint(t))
	if err != nil {
		t.Fatal(err)
	}
	defer sqsProxy.Close()
	var sqsBack *time.Timer
	outageScenario(t, e, outage{
		name: "dropped connections",
		env: []string{
			"AWS_ENDPOINT_URL=" + others.URL(), "AWS_ENDPOINT_URL_SQS=" + sqsProxy.URL(),
			"THINGPIPE_PROVISIONING__MAX_RECEIVES=2", "THINGPIPE_PROVISIONING__RETRY__MAX_ELAPSED=2s",
			"THINGPIPE_SQS__NACK_BACKOFF_INITIAL=500ms",
		},
		start: func() {
			others.Drop()
			sqsProxy.Drop()
			sqsBack = time.AfterFunc(4*time.Second, sqsProxy.Pass)
		},
		end:       func() { sqsBack.Stop(); sqsProxy.Pass(); others.Pass() },
		length:    outageLength(t, 12*time.Second),
		controlAt: 4300 * time.Millisecond,
	})
	t.Logf("proxy (SQS): %+v; proxy (other services): %+v", sqsProxy.Stats(), others.Stats())
}

// TestOutageStalledConnections: every connection to AWS accepted but silent for 12 s (a network
// partition), then the held bytes flow again. Calls must not hang: aws.response_timeout (5 s here)
// fails the stalled attempts, which /readyz reports at once.
func TestOutageStalledConnections(t *testing.T) {
	e := setup(t)
	p, err := faultproxy.New(awstest.Endpoint(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	outageScenario(t, e, outage{name: "stalled connections", env: []string{"AWS_ENDPOINT_URL=" + p.URL()}, start: p.Stall, end: p.Pass, length: outageLength(t, 12*time.Second)})
	t.Logf("proxy: %+v", p.Stats())
}

// TestOutageThrottling: three of every four calls to each AWS service answered with that service's
// throttling error for 15 s. The SDK's retries (and its retry quota) give up on many of them, so
// handlers fail until their own retries run out: the messages must be handed back, not
// dead-lettered, and every service must actually have been throttled.
func TestOutageThrottling(t *testing.T) {
	e := setup(t)
	th, err := faultproxy.NewThrottler(awstest.Endpoint(t))
	if err != nil {
		t.Fatal(err)
	}
	defer th.Close()
	outageScenario(t, e, outage{name: "throttling three calls in four", env: []string{"AWS_ENDPOINT_URL=" + th.URL()}, start: func() { th.Throttle(0.75) }, end: th.Pass, length: outageLength(t, 15*time.Second)})
	st := th.Stats()
	t.Logf("throttler: requests %v, throttled %v", st.Requests, st.Throttled)
	for _, svc := range []string{"sqs", "kinesis", "dynamodb", "s3", "sns"} {
		if st.Throttled[svc] == 0 {
			t.Errorf("no %s call was throttled: the test did not exercise it", svc)
		}
	}
}

// outageLength is def, or CHAOS_OUTAGE (a Go duration such as 30s) when set: `make test` keeps
// the faults short, a developer can run them as long as issue 6 asks (10-30 s) or longer.
func outageLength(t *testing.T, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv("CHAOS_OUTAGE")
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("CHAOS_OUTAGE=%q: want a positive duration such as 30s", v)
	}
	return d
}

// freeAddr returns a loopback address nothing listens on (yet).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// readiness fetches /readyz; ok is false when the process did not answer.
func readiness(addr string) (r pipeline.Readiness, status int, ok bool) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + "/readyz")
	if err != nil {
		return r, 0, false
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return r, resp.StatusCode, false
	}
	return r, resp.StatusCode, true
}

// awsDegraded returns the degraded components reported by the AWS clients ("aws.<service>").
func awsDegraded(r pipeline.Readiness) []string {
	var out []string
	for _, d := range r.Degraded {
		if strings.HasPrefix(d.Component, "aws.") {
			out = append(out, d.Component)
		}
	}
	return out
}

// readyLog records what /readyz said while the test ran.
type readyLog struct {
	mu     sync.Mutex
	events []string // "±<elapsed> <state>" on every change, for failure messages
	last   string
}

func (l *readyLog) note(start time.Time, state string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if state != l.last {
		l.events = append(l.events, fmt.Sprintf("%.1fs %s", time.Since(start).Seconds(), state))
		l.last = state
	}
}

func (l *readyLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.events, "; ")
}

func outageScenario(t *testing.T, e *env, o outage) {
	const devices = 4
	s := newScenario(t, e, devices)
	addr := freeAddr(t)
	s.envv = append(s.envv, o.env...) // the last value of a variable wins
	s.envv = append(s.envv,
		"THINGPIPE_HTTP_ADDR="+addr,
		"THINGPIPE_READINESS__DEGRADED_WINDOW="+degradedWindow.String(),
		"THINGPIPE_READINESS__CHECK_INTERVAL=1s",
		"THINGPIPE_READINESS__CHECK_TIMEOUT=1s",
		"THINGPIPE_AWS__RESPONSE_TIMEOUT=5s", // SQS long polls wait 1s (harness)
	)
	began := time.Now()
	p := s.start(t)
	waitFor(t, 60*time.Second, "/readyz ready after start", func() (bool, string) {
		if p.exited() {
			t.Fatalf("thingpipe run exited: %s", p.tail())
		}
		r, code, ok := readiness(addr)
		return ok && r.Ready, fmt.Sprintf("status %d: %+v", code, r)
	})

	// Load for the whole test: rounds 10-14 are the incident, which the fault overlaps.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	interval := 300 * time.Millisecond
	lead := 2500 * time.Millisecond // load before the fault
	rounds := int((lead + o.length + 6*time.Second) / interval)
	loaded := make(chan map[string]sent, 1)
	go func() { loaded <- s.load(ctx, t, rounds, interval) }()

	// Poll /readyz throughout.
	var log readyLog
	var mu sync.Mutex
	var faultStart, faultEnd time.Time
	var seenDuring []string // aws components degraded while the fault lasted
	var readyAfter time.Time
	var lastAnswer time.Time         // when /readyz last answered
	var longestSilence time.Duration // the longest time /readyz did not answer
	pollDone := make(chan struct{})
	go func() {
		defer close(pollDone)
		for ctx.Err() == nil {
			r, code, ok := readiness(addr)
			now := time.Now()
			state := fmt.Sprintf("%d ready=%v aws=%v", code, r.Ready, awsDegraded(r))
			if !ok {
				state = "no answer"
			}
			log.note(began, state)
			mu.Lock()
			if ok {
				lastAnswer = now
			} else if !lastAnswer.IsZero() {
				longestSilence = max(longestSilence, now.Sub(lastAnswer))
			}
			switch {
			case !faultStart.IsZero() && faultEnd.IsZero() && ok && !r.Ready:
				seenDuring = append(seenDuring, awsDegraded(r)...)
			case !faultEnd.IsZero() && readyAfter.IsZero() && ok && r.Ready:
				readyAfter = now
			}
			mu.Unlock()
			time.Sleep(200 * time.Millisecond)
		}
	}()
	defer func() { cancel(); <-pollDone }()

	if o.controlAt == 0 {
		o.controlAt = -200 * time.Millisecond
	}
	if o.controlAt <= -lead || o.controlAt >= o.length {
		t.Fatalf("controlAt %s: want it within the load, before the fault ends", o.controlAt)
	}
	if o.controlAt < 0 {
		time.Sleep(lead + o.controlAt)
		s.sendControl(t)
		time.Sleep(-o.controlAt)
	} else {
		time.Sleep(lead)
	}
	mu.Lock()
	faultStart = time.Now()
	mu.Unlock()
	t.Logf("%s: from %.1fs for %s, control messages at %+.1fs", o.name, time.Since(began).Seconds(), o.length, o.controlAt.Seconds())
	o.start()
	if o.controlAt >= 0 {
		time.Sleep(o.controlAt)
		s.sendControl(t) // during the fault
		time.Sleep(o.length - o.controlAt)
	} else {
		time.Sleep(o.length)
	}
	o.end()
	mu.Lock()
	faultEnd = time.Now()
	mu.Unlock()

	recs := <-loaded
	t.Logf("%d telemetry records sent to %d devices", len(recs), devices)

	firing, resolved, dead := map[string]int{}, map[string]int{}, map[string]string{}
	waitFor(t, 90*time.Second, "drained", func() (bool, string) {
		if p.exited() {
			t.Fatalf("thingpipe run exited: %s", p.tail())
		}
		ok, summary := s.settled(t, recs, firing, resolved)
		s.deadLettered(t, dead)
		return ok || len(dead) > 0, fmt.Sprintf("%s; %d dead-lettered", summary, len(dead))
	})
	// Let redeliveries still under way land (batches, checkpoints, SQS visibility).
	time.Sleep(4 * time.Second)
	s.drainInbox(t, firing, resolved)

	for _, d := range s.deadLettered(t, dead) {
		t.Errorf("dead-lettered after %s: %s", o.name, d)
	}
	if ok, summary := s.checkArchive(t, recs); !ok || !archivedOnce(summary) {
		t.Errorf("archive: %s", summary)
	} else {
		t.Logf("archive: %s", summary)
	}
	for _, d := range s.devices {
		if firing[d] != 1 || resolved[d] != 1 {
			t.Errorf("%s: %d FIRING and %d RESOLVED emails for one incident, want 1 and 1", d, firing[d], resolved[d])
		}
	}

	mu.Lock()
	if len(seenDuring) == 0 {
		t.Errorf("/readyz never reported an AWS component degraded during %s; seen: %s", o.name, log.String())
	} else {
		t.Logf("degraded during the fault: %v", distinctStrings(seenDuring))
	}
	// The degraded window (3 s) after the last failure, plus calls still in their SDK backoff.
	const readyWithin = 15 * time.Second
	switch back := readyAfter.Sub(faultEnd); {
	case readyAfter.IsZero():
		t.Errorf("/readyz not ready again after %s; seen: %s", o.name, log.String())
	case back > readyWithin:
		t.Errorf("/readyz ready again only %.1fs after the fault ended, want within %s; seen: %s", back.Seconds(), readyWithin, log.String())
	default:
		t.Logf("/readyz ready again %.1fs after the fault ended", back.Seconds())
	}
	// /readyz must answer throughout (its checks give up after check_timeout, 1 s here).
	if longestSilence > 5*time.Second {
		t.Errorf("/readyz did not answer for %.1fs; seen: %s", longestSilence.Seconds(), log.String())
	}
	mu.Unlock()
	t.Logf("/readyz: %s", log.String())

	if p.exited() {
		t.Fatalf("thingpipe run exited: %s", p.tail())
	}
	p.stop(syscall.SIGTERM)
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code after SIGTERM: %d, want 0: %s", code, p.tail())
	}
}

func distinctStrings(in []string) []string {
	set := map[string]bool{}
	var out []string
	for _, s := range in {
		if !set[s] {
			set[s] = true
			out = append(out, s)
		}
	}
	return out
}

// deadLettered adds the scenario's messages in the four stage DLQs to seen (message id →
// "<stage>: <kind>: <reason>") and returns it. Every message it reads is made visible again at
// once, so other tests' checks still find theirs.
func (s *scenario) deadLettered(t *testing.T, seen map[string]string) map[string]string {
	t.Helper()
	ctx := t.Context()
	for stage, url := range map[string]string{
		pipeline.StageProvisioning: s.e.out.ProvisioningDLQURL, pipeline.StageBinding: s.e.out.BindingDLQURL,
		pipeline.StageAlerting: s.e.out.AlertingDLQURL, pipeline.StageArchival: s.e.out.ArchivalDLQURL,
	} {
		var read []*string
		for {
			res, err := s.e.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
				QueueUrl: aws.String(url), MaxNumberOfMessages: 10, VisibilityTimeout: 10,
				MessageAttributeNames: []string{"All"},
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Messages) == 0 {
				break
			}
			for _, m := range res.Messages {
				read = append(read, m.ReceiptHandle)
				if !strings.Contains(aws.ToString(m.Body), s.name) {
					continue
				}
				attr := func(k string) string { return aws.ToString(m.MessageAttributes[k].StringValue) }
				seen[aws.ToString(m.MessageId)] = fmt.Sprintf("%s: %s: %s", stage, attr(pipeline.MetadataDLQKind), attr(pipeline.MetadataDLQReason))
			}
		}
		for _, h := range read {
			if _, err := s.e.sqs.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(url), ReceiptHandle: h, VisibilityTimeout: 0}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return seen
}

// archivedOnce reads checkArchive's summary: nothing missing, archived twice, wrong or unknown.
func archivedOnce(summary string) bool {
	var sent, objects, missing, dups, wrong, unknown int
	_, err := fmt.Sscanf(summary, "%d records sent, %d objects, %d missing, %d archived more than once, %d with wrong content, %d unknown", &sent, &objects, &missing, &dups, &wrong, &unknown)
	return err == nil && missing == 0 && dups == 0 && wrong == 0 && unknown == 0
}
