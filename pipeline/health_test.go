package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func readyz(t *testing.T, url string) (int, Readiness) {
	t.Helper()
	code, body := get(t, url+"/readyz")
	var r Readiness
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("/readyz body %q: %v", body, err)
	}
	return code, r
}

func TestHealthEndpoints(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}
	m := NewMetrics()
	h := NewHealth(HealthOptions{DegradedWindow: 30 * time.Second, CheckInterval: 10 * time.Second, Metrics: m, Now: clock.Now})
	srv := httptest.NewServer(NewMux(m, h))
	defer srv.Close()

	if code, body := get(t, srv.URL+"/healthz"); code != 200 || !strings.Contains(body, `"alive":true`) {
		t.Errorf("/healthz = %d %q", code, body)
	}

	h.ExpectStage("alerting")
	h.ExpectStage("archival")
	h.SetRunning("archival", true)
	code, r := readyz(t, srv.URL)
	if code != 503 || r.Ready || r.Stages["alerting"] != "not running" || r.Stages["archival"] != "running" {
		t.Errorf("one stage down: /readyz = %d %+v", code, r)
	}
	h.SetRunning("alerting", true)
	if code, r := readyz(t, srv.URL); code != 200 || !r.Ready {
		t.Errorf("all running: /readyz = %d %+v", code, r)
	}

	h.ReportError("aws.SQS", errors.New("ReceiveMessage: 503 Service Unavailable"))
	code, r = readyz(t, srv.URL)
	want := []Degradation{{Component: "aws.SQS", Error: "ReceiveMessage: 503 Service Unavailable", LastSeen: clock.Now()}}
	if code != 503 || r.Ready || !cmp.Equal(r.Degraded, want) {
		t.Errorf("degraded: /readyz = %d %+v, want 503 naming aws.SQS", code, r)
	}
	if got := metric(t, m.Registry(), "thingpipe_dependency_errors_total", "component", "aws.SQS"); got != 1 {
		t.Errorf("dependency errors = %v, want 1", got)
	}
	clock.Add(29 * time.Second)
	if code, _ := readyz(t, srv.URL); code != 503 {
		t.Errorf("still within the window: /readyz = %d, want 503", code)
	}
	clock.Add(2 * time.Second)
	if code, r := readyz(t, srv.URL); code != 200 {
		t.Errorf("window passed: /readyz = %d %+v, want 200", code, r)
	}

	// Dependency checks: failures name the check; results are reused within the interval.
	var calls atomic.Int32
	var fail atomic.Bool
	fail.Store(true)
	h.AddCheck("kinesis", func(ctx context.Context) error {
		calls.Add(1)
		if fail.Load() {
			return errors.New("DescribeStreamSummary: stream thingpipe-telemetry not found")
		}
		return nil
	})
	clock.Add(time.Minute) // earlier (empty) check results are stale now
	code, r = readyz(t, srv.URL)
	if code != 503 || len(r.Degraded) != 1 || r.Degraded[0].Component != "check:kinesis" ||
		!strings.Contains(r.Degraded[0].Error, "not found") {
		t.Errorf("failing check: /readyz = %d %+v", code, r)
	}
	fail.Store(false)
	readyz(t, srv.URL)
	if n := calls.Load(); n != 1 {
		t.Errorf("check ran %d times within one interval, want 1 (cached)", n)
	}
	clock.Add(11 * time.Second)
	if code, _ := readyz(t, srv.URL); code != 200 || calls.Load() != 2 {
		t.Errorf("after the interval: /readyz = %d with %d check runs, want 200 and 2", code, calls.Load())
	}
}

func TestMetricsEndpoint(t *testing.T) {
	m := NewMetrics()
	srv := httptest.NewServer(NewMux(m, NewHealth(HealthOptions{})))
	defer srv.Close()

	m.initStage("binding")
	m.SetKinesisLag("alerting", "shardId-000000000001", 1500*time.Millisecond)
	m.SetKinesisLag("alerting", "shardId-000000000002", 0)
	m.SetSQSInFlight("thingpipe-binding", 7)
	m.DeleteKinesisLag("alerting", "shardId-000000000002")

	code, body := get(t, srv.URL+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{
		`thingpipe_kinesis_lag_seconds{group="alerting",shard="shardId-000000000001"} 1.5`,
		`thingpipe_sqs_in_flight_messages{queue="thingpipe-binding"} 7`,
		`thingpipe_messages_received_total{stage="binding"} 0`,
		`thingpipe_stage_up{stage="binding"} 0`,
		`go_goroutines`,
		`process_cpu_seconds_total`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(body, "shardId-000000000002") {
		t.Error("/metrics still shows a deleted shard's lag")
	}
}
