package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// Health tracks what /readyz reports: every stage the process was asked to run is running, no
// component reported an error within the degraded window, and every registered dependency check
// passes. /healthz only says the process is alive and serving.
type Health struct {
	now           func() time.Time
	window        time.Duration
	checkInterval time.Duration
	checkTimeout  time.Duration
	metrics       *Metrics

	mu       sync.Mutex
	stages   map[string]string // stage → running, not running, stopping
	degraded map[string]problem
	checks   []check

	checkMu     sync.Mutex // one round of checks at a time
	lastCheck   time.Time
	checkErrors map[string]string
}

// HealthOptions configures a Health. Zero values take the defaults noted.
type HealthOptions struct {
	// DegradedWindow is how long a reported error keeps the process not ready (default 30s).
	DegradedWindow time.Duration
	// CheckInterval is how long dependency check results are reused (default 15s), so a busy probe
	// does not turn into a stream of AWS calls.
	CheckInterval time.Duration
	// CheckTimeout bounds one round of dependency checks (default 3s).
	CheckTimeout time.Duration
	// Metrics, when set, counts reported errors per component.
	Metrics *Metrics
	// Now is the clock (default time.Now); tests pass a fake one.
	Now func() time.Time
}

type problem struct {
	err  string
	last time.Time
}

type check struct {
	name string
	fn   func(context.Context) error
}

// NewHealth returns a Health with no stages and no problems.
func NewHealth(opts HealthOptions) *Health {
	if opts.DegradedWindow <= 0 {
		opts.DegradedWindow = 30 * time.Second
	}
	if opts.CheckInterval <= 0 {
		opts.CheckInterval = 15 * time.Second
	}
	if opts.CheckTimeout <= 0 {
		opts.CheckTimeout = 3 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Health{
		now:           opts.Now,
		window:        opts.DegradedWindow,
		checkInterval: opts.CheckInterval,
		checkTimeout:  opts.CheckTimeout,
		metrics:       opts.Metrics,
		stages:        map[string]string{},
		degraded:      map[string]problem{},
	}
}

// ExpectStage registers a stage that must be running for the process to be ready.
func (h *Health) ExpectStage(stage string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.stages[stage]; !ok {
		h.stages[stage] = stageNotRunning
	}
}

// Stage states in /readyz.
const (
	stageRunning    = "running"
	stageNotRunning = "not running"
	stageStopping   = "stopping"
)

// SetRunning records whether a stage's router is running.
func (h *Health) SetRunning(stage string, running bool) {
	state := stageNotRunning
	if running {
		state = stageRunning
	}
	h.mu.Lock()
	h.stages[stage] = state
	h.mu.Unlock()
}

// SetStopping records that a stage is shutting down (it is no longer ready).
func (h *Health) SetStopping(stage string) {
	h.mu.Lock()
	h.stages[stage] = stageStopping
	h.mu.Unlock()
}

// ReportError marks component degraded for the degraded window. Components call it on failures an
// operator should see (AWS 5xx, unreachable endpoints, denied credentials); ReportAWSErrors does it
// for every AWS client built from a config. A nil err is ignored.
func (h *Health) ReportError(component string, err error) {
	if err == nil {
		return
	}
	h.mu.Lock()
	h.degraded[component] = problem{err: err.Error(), last: h.now()}
	h.mu.Unlock()
	if h.metrics != nil {
		h.metrics.awsErrors.WithLabelValues(component).Inc()
	}
}

// AddCheck registers a dependency check run by /readyz (results cached for the check interval).
func (h *Health) AddCheck(name string, fn func(context.Context) error) {
	h.mu.Lock()
	h.checks = append(h.checks, check{name, fn})
	h.mu.Unlock()
}

// HasCheck reports whether a check of that name is registered.
func (h *Health) HasCheck(name string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.checks {
		if c.name == name {
			return true
		}
	}
	return false
}

// Readiness is the /readyz body.
type Readiness struct {
	Ready    bool              `json:"ready"`
	Stages   map[string]string `json:"stages"`
	Degraded []Degradation     `json:"degraded,omitempty"`
}

// Degradation names one thing that makes the process not ready.
type Degradation struct {
	Component string    `json:"component"`
	Error     string    `json:"error"`
	LastSeen  time.Time `json:"last_seen,omitzero"`
}

// Readiness evaluates readiness now, running dependency checks if their results are stale.
func (h *Health) Readiness(ctx context.Context) Readiness {
	checkErrs := h.runChecks(ctx)

	h.mu.Lock()
	defer h.mu.Unlock()
	r := Readiness{Ready: true, Stages: map[string]string{}}
	for s, state := range h.stages {
		r.Stages[s] = state
		if state != stageRunning {
			r.Ready = false
		}
	}
	now := h.now()
	for c, p := range h.degraded {
		if now.Sub(p.last) > h.window {
			delete(h.degraded, c)
			continue
		}
		r.Degraded = append(r.Degraded, Degradation{Component: c, Error: p.err, LastSeen: p.last})
	}
	for name, e := range checkErrs {
		r.Degraded = append(r.Degraded, Degradation{Component: "check:" + name, Error: e})
	}
	if len(r.Degraded) > 0 {
		r.Ready = false
		sort.Slice(r.Degraded, func(i, j int) bool { return r.Degraded[i].Component < r.Degraded[j].Component })
	}
	return r
}

func (h *Health) runChecks(ctx context.Context) map[string]string {
	h.checkMu.Lock()
	defer h.checkMu.Unlock()
	if !h.lastCheck.IsZero() && h.now().Sub(h.lastCheck) < h.checkInterval {
		return h.checkErrors
	}
	h.mu.Lock()
	checks := append([]check(nil), h.checks...)
	h.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, h.checkTimeout)
	defer cancel()
	type result struct {
		i   int
		err error
	}
	// Buffered: a check still running when the round gives up finishes into it and exits.
	results := make(chan result, len(checks))
	for i, c := range checks {
		go func() { results <- result{i, c.fn(ctx)} }()
	}
	// The round ends at the check timeout even if a check ignores its context (a call queued
	// behind a stalled one), so /readyz always answers.
	out := map[string]string{}
	pending := make([]bool, len(checks))
	for i := range pending {
		pending[i] = true
	}
wait:
	for range checks {
		select {
		case r := <-results:
			pending[r.i] = false
			if r.err != nil {
				out[checks[r.i].name] = r.err.Error()
			}
		case <-ctx.Done():
			break wait
		}
	}
	for i, p := range pending {
		if p {
			out[checks[i].name] = fmt.Sprintf("no answer within %s", h.checkTimeout)
		}
	}
	h.checkErrors = out
	h.lastCheck = h.now()
	return out
}

// LiveHandler serves /healthz: 200 while the process can answer at all.
func (h *Health) LiveHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"alive":true}` + "\n"))
	})
}

// ReadyHandler serves /readyz: 200 when ready, 503 otherwise, with a JSON Readiness body that names
// what is not running or degraded.
func (h *Health) ReadyHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rd := h.Readiness(r.Context())
		w.Header().Set("Content-Type", "application/json")
		if !rd.Ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rd)
	})
}

// NewMux serves /metrics, /healthz and /readyz.
func NewMux(m *Metrics, h *Health) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	mux.Handle("GET /healthz", h.LiveHandler())
	mux.Handle("GET /readyz", h.ReadyHandler())
	return mux
}

// ReportAWSErrors makes every AWS client built from cfg report failures to h as component
// "aws.<service>" (e.g. "aws.SQS"). It sees each call's final error, after the SDK's own retries,
// and counts only failures that mean the dependency is unhealthy or unusable: 5xx responses,
// transport errors (including a stalled connection's response timeout), throttling that was still
// failing when the SDK gave up (or whose retry quota was spent), denied or expired credentials and
// missing resources. Business outcomes such as a failed DynamoDB condition, throttling the SDK
// retried through, or the caller's own cancellation or deadline do not count.
func ReportAWSErrors(cfg *aws.Config, h *Health) {
	const id = "thingpipe.health"
	mw := middleware.InitializeMiddlewareFunc(id,
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			out, md, err := next.HandleInitialize(ctx, in)
			// A call whose own context ended failed because of its caller, not the dependency.
			if err != nil && ctx.Err() == nil && unhealthyAWSError(err) {
				h.ReportError("aws."+awsmiddleware.GetServiceID(ctx),
					fmt.Errorf("%s: %w", awsmiddleware.GetOperationName(ctx), err))
			}
			return out, md, err
		})
	// Each attempt that got no answer within the response timeout (a stalled connection) is
	// reported at once, not only when the SDK's retries are spent: a stall makes every attempt
	// wait that long, so the final error would come late or, if the stall heals in time, never.
	const attemptID = "thingpipe.health.attempt"
	attemptMW := middleware.FinalizeMiddlewareFunc(attemptID,
		func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			out, md, err := next.HandleFinalize(ctx, in)
			if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
				h.ReportError("aws."+awsmiddleware.GetServiceID(ctx),
					fmt.Errorf("%s: attempt got no answer in time: %w", awsmiddleware.GetOperationName(ctx), err))
			}
			return out, md, err
		})
	cfg.APIOptions = append(cfg.APIOptions, func(stack *middleware.Stack) error {
		// A config copied from one already instrumented reports to the newest Health only.
		if _, ok := stack.Initialize.Get(id); ok {
			if _, err := stack.Initialize.Swap(id, mw); err != nil {
				return err
			}
		} else if err := stack.Initialize.Add(mw, middleware.After); err != nil {
			return err
		}
		if _, ok := stack.Finalize.Get(attemptID); ok {
			_, err := stack.Finalize.Swap(attemptID, attemptMW)
			return err
		}
		if _, ok := stack.Finalize.Get("Retry"); ok { // inside the SDK's retry loop: every attempt
			return stack.Finalize.Insert(attemptMW, "Retry", middleware.After)
		}
		return stack.Finalize.Add(attemptMW, middleware.Before)
	})
}

// unhealthyCode reports 4xx error codes that mean the process cannot do its work (as opposed to an
// answer about the data, like ConditionalCheckFailedException).
func unhealthyCode(code string) bool {
	switch code {
	case "AccessDenied", "AccessDeniedException", "UnrecognizedClientException", "InvalidClientTokenId",
		"ExpiredToken", "ExpiredTokenException", "SignatureDoesNotMatch", "InvalidSignatureException",
		"MissingAuthenticationToken", "ResourceNotFoundException", "AWS.SimpleQueueService.NonExistentQueue",
		"QueueDoesNotExist", "NoSuchBucket", "NotFound":
		return true
	}
	return false
}

// unhealthyAWSError classifies a call's final error; the caller has checked that the call's own
// context had not ended, so a DeadlineExceeded here is a transport timeout (a stalled connection
// under the response timeout), which counts.
func unhealthyAWSError(err error) bool {
	if errors.Is(err, context.Canceled) {
		return false
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		// Status 0: the request was never answered (connection refused, DNS, TLS).
		if code := re.HTTPStatusCode(); code == 0 || code >= 500 || code == http.StatusTooManyRequests {
			return true
		}
		var ae smithy.APIError
		if !errors.As(err, &ae) {
			return false
		}
		// A throttle here is one the SDK's retries did not get through: the component is not
		// keeping up, and an operator should see it.
		_, throttled := retry.DefaultThrottleErrorCodes[ae.ErrorCode()]
		return throttled || unhealthyCode(ae.ErrorCode())
	}
	// No response at all: connection refused, DNS, TLS, credentials that could not be loaded.
	return true
}

// IsUnavailable reports whether err says a dependency could not be used right now, rather than
// anything about the message: no response at all (connection refused or reset, DNS, a stalled
// connection timing out), a 5xx answer, a 429, throttling (retry.DefaultThrottleErrorCodes) or
// a timeout the SDK still reported after its own retries, or the SDK refusing to try because its
// retry quota is spent (recent failures). Retrying the same message later will work once the
// dependency is back, so such a message must be handed back to its source, never dead-lettered.
// Errors wrapped with %w (as workers and the retry middleware do) are found; a nil err is false.
func IsUnavailable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true // a call's own deadline: the dependency did not answer in time
	}
	var quota ratelimit.QuotaExceededError
	if errors.As(err, &quota) {
		return true
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		switch code := re.HTTPStatusCode(); {
		case code == 0, code >= 500, code == http.StatusTooManyRequests:
			return true
		}
		var ae smithy.APIError
		if errors.As(err, &ae) {
			if _, ok := retry.DefaultThrottleErrorCodes[ae.ErrorCode()]; ok {
				return true
			}
			if _, ok := retry.DefaultRetryableErrorCodes[ae.ErrorCode()]; ok { // RequestTimeout ...
				return true
			}
		}
		return false
	}
	// Not an answer from AWS: a transport failure the SDK wrapped without a response, or one from
	// other code.
	var send *smithyhttp.RequestSendError
	var netErr net.Error
	return errors.As(err, &send) || errors.As(err, &netErr)
}
