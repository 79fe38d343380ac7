package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Throttler is an HTTP reverse proxy that answers a share of requests with the throttling error
// of the request's AWS service, in that service's protocol, so the real SDK classifies it as
// throttling (retry.DefaultThrottles):
//
//	dynamodb  400 JSON 1.0  ProvisionedThroughputExceededException
//	kinesis   400 JSON 1.1  ProvisionedThroughputExceededException
//	sqs       400 JSON 1.0  ThrottlingException (x-amzn-query-error RequestThrottled;Sender)
//	sns       400 query XML <ErrorResponse><Error><Code>Throttling</Code>
//	s3        503 REST XML  <Error><Code>SlowDown</Code>
//
// Any other service gets 400 JSON ThrottlingException. Which requests are throttled is
// deterministic: per service, exactly share of them, spread evenly (share 0.5 throttles the 1st,
// 3rd, 5th ... request of each service after Throttle).
type Throttler struct {
	target *url.URL
	ln     net.Listener
	srv    *http.Server
	done   chan struct{}

	mu       sync.Mutex
	share    float64
	services map[string]bool // nil: every service
	seen     map[string]int  // requests per service since the share was set, for the spread
	stats    ThrottleStats
}

// ThrottleStats counts a Throttler's requests per service (signing name: sqs, sns, s3,
// dynamodb, kinesis, or "unknown").
type ThrottleStats struct {
	Requests  map[string]int
	Throttled map[string]int
}

// NewThrottler starts a throttling proxy on a free loopback port in front of target (an http URL,
// or host:port). It starts passing every request through.
func NewThrottler(target string) (*Throttler, error) {
	if !strings.Contains(target, "://") {
		target = "http://" + target
	}
	u, err := url.Parse(target)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("faultproxy: throttler target %q is not a URL: %v", target, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listening: %w", err)
	}
	t := &Throttler{
		target: u, ln: ln, done: make(chan struct{}), seen: map[string]int{},
		stats: ThrottleStats{Requests: map[string]int{}, Throttled: map[string]int{}},
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.Host = r.In.Host // the SDK signed the Host it sent
		},
		// A fault between the proxy and the target reaches the client as a dropped connection, not
		// as a 502 the SDK would read as an answer from AWS.
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, _ error) {
			if hj, ok := w.(http.Hijacker); ok {
				if c, _, err := hj.Hijack(); err == nil {
					resetConn(c)
					_ = c.Close() // reset on purpose
					return
				}
			}
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	t.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			svc := Service(r)
			if t.throttle(svc) {
				writeThrottle(w, r, svc)
				return
			}
			rp.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { defer close(t.done); _ = t.srv.Serve(ln) }()
	return t, nil
}

// Addr is the proxy's listening address (host:port).
func (t *Throttler) Addr() string { return t.ln.Addr().String() }

// URL is the proxy's address as an HTTP endpoint URL, for AWS_ENDPOINT_URL.
func (t *Throttler) URL() string { return "http://" + t.Addr() }

// Throttle answers share (0 to 1) of the requests of each of services (signing names such as
// "sqs", "s3"; none: every service) with a throttling error. Throttle(0) passes everything.
func (t *Throttler) Throttle(share float64, services ...string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.share = min(max(share, 0), 1)
	t.services = nil
	if len(services) > 0 {
		t.services = map[string]bool{}
		for _, s := range services {
			t.services[strings.ToLower(s)] = true
		}
	}
	t.seen = map[string]int{}
}

// Pass stops throttling.
func (t *Throttler) Pass() { t.Throttle(0) }

// Stats returns copies of the counters.
func (t *Throttler) Stats() ThrottleStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := ThrottleStats{Requests: map[string]int{}, Throttled: map[string]int{}}
	for k, v := range t.stats.Requests {
		out.Requests[k] = v
	}
	for k, v := range t.stats.Throttled {
		out.Throttled[k] = v
	}
	return out
}

// Close stops the proxy: open requests get a few seconds to finish.
func (t *Throttler) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := t.srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = t.srv.Close()
	}
	<-t.done
	return err
}

// throttle counts a request and says whether to throttle it: the n-th request (from 1) of a
// service is throttled when ceil(n*share) > ceil((n-1)*share), which throttles exactly share of
// them, evenly spread, starting with the first.
func (t *Throttler) throttle(svc string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stats.Requests[svc]++
	if t.share == 0 || (t.services != nil && !t.services[svc]) {
		return false
	}
	t.seen[svc]++
	n := float64(t.seen[svc])
	if math.Ceil(n*t.share) > math.Ceil((n-1)*t.share) {
		t.stats.Throttled[svc]++
		return true
	}
	return false
}

// Service names the AWS service a request is for: the signing name in its SigV4 credential scope
// (Authorization header or presigned X-Amz-Credential), else the X-Amz-Target prefix, else
// "unknown".
func Service(r *http.Request) string {
	scope := ""
	if a := r.Header.Get("Authorization"); a != "" {
		if i := strings.Index(a, "Credential="); i >= 0 {
			scope = a[i+len("Credential="):]
			if j := strings.IndexAny(scope, ", "); j >= 0 {
				scope = scope[:j]
			}
		}
	} else {
		scope = r.URL.Query().Get("X-Amz-Credential")
	}
	// <key id>/<date>/<region>/<service>/aws4_request
	if parts := strings.Split(scope, "/"); len(parts) == 5 && parts[4] == "aws4_request" {
		return strings.ToLower(parts[3])
	}
	target := r.Header.Get("X-Amz-Target")
	switch {
	case strings.HasPrefix(target, "DynamoDB_"):
		return "dynamodb"
	case strings.HasPrefix(target, "Kinesis_"):
		return "kinesis"
	case strings.HasPrefix(target, "AmazonSQS."):
		return "sqs"
	}
	return "unknown"
}

const requestID = "faultproxy-throttled"

func writeThrottle(w http.ResponseWriter, r *http.Request, svc string) {
	h := w.Header()
	h.Set("X-Amzn-RequestId", requestID)
	var status int
	var body string
	switch svc {
	case "s3":
		h.Set("Content-Type", "application/xml")
		h.Set("X-Amz-Request-Id", requestID)
		status = http.StatusServiceUnavailable
		body = `<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
			`<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message><RequestId>` + requestID + `</RequestId></Error>`
	case "sns":
		h.Set("Content-Type", "text/xml")
		status = http.StatusBadRequest
		body = `<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><Error><Type>Sender</Type>` +
			`<Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>` + requestID + `</RequestId></ErrorResponse>`
	case "dynamodb", "kinesis":
		code := "ProvisionedThroughputExceededException"
		prefix := "com.amazonaws.dynamodb.v20120810#"
		h.Set("Content-Type", "application/x-amz-json-1.0")
		if svc == "kinesis" {
			prefix = ""
			h.Set("Content-Type", "application/x-amz-json-1.1")
		}
		h.Set("X-Amzn-ErrorType", code)
		status = http.StatusBadRequest
		body = `{"__type":"` + prefix + code + `","message":"Rate exceeded for this request."}`
	default: // sqs (JSON 1.0, query-compatible) and anything else
		h.Set("Content-Type", "application/x-amz-json-1.0")
		h.Set("X-Amzn-ErrorType", "ThrottlingException")
		if svc == "sqs" {
			h.Set("X-Amzn-Query-Error", "RequestThrottled;Sender")
		}
		status = http.StatusBadRequest
		body = `{"__type":"com.amazonaws.sqs#ThrottlingException","message":"Rate exceeded"}`
	}
	if svc == "dynamodb" { // DynamoDB signs its bodies; the SDK checks it
		h.Set("X-Amz-Crc32", strconv.FormatUint(uint64(crc32.ChecksumIEEE([]byte(body))), 10))
	}
	w.WriteHeader(status)
	if r.Method == http.MethodHead { // HeadObject/HeadBucket: the status alone says it
		return
	}
	_, _ = w.Write([]byte(body))
}
