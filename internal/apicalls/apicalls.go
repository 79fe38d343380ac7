// Package apicalls counts AWS API calls by service and operation, from inside the SDK's middleware
// stack, so benchmarks and the load harness report calls that were really made, not estimates.
package apicalls

import (
	"context"
	"sort"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/smithy-go/middleware"
)

// Counter counts attempted API operations. The zero value is not usable; use New.
type Counter struct {
	mu     sync.Mutex
	counts map[Key]int64
}

// Key names one API operation.
type Key struct {
	Service   string // e.g. "SQS"
	Operation string // e.g. "ReceiveMessage"
}

// New returns an empty Counter.
func New() *Counter { return &Counter{counts: make(map[Key]int64)} }

// Instrument adds the counter to cfg's middleware, so every client built from cfg is counted. Each
// operation invocation counts once, including SDK retries of it (those are counted as one call).
func (c *Counter) Instrument(cfg *aws.Config) {
	cfg.APIOptions = append(cfg.APIOptions, func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("thingpipe.apicalls",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				c.add(Key{Service: awsmiddleware.GetServiceID(ctx), Operation: awsmiddleware.GetOperationName(ctx)})
				return next.HandleInitialize(ctx, in)
			}), middleware.After)
	})
}

func (c *Counter) add(k Key) {
	c.mu.Lock()
	c.counts[k]++
	c.mu.Unlock()
}

// Get returns the count for one operation.
func (c *Counter) Get(service, operation string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[Key{service, operation}]
}

// Service returns the total for one service.
func (c *Counter) Service(service string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n int64
	for k, v := range c.counts {
		if k.Service == service {
			n += v
		}
	}
	return n
}

// Count is one row of a Snapshot.
type Count struct {
	Key
	Calls int64
}

// Snapshot returns every count, sorted by service then operation.
func (c *Counter) Snapshot() []Count {
	c.mu.Lock()
	out := make([]Count, 0, len(c.counts))
	for k, v := range c.counts {
		out = append(out, Count{k, v})
	}
	c.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Service != out[j].Service {
			return out[i].Service < out[j].Service
		}
		return out[i].Operation < out[j].Operation
	})
	return out
}

// Reset sets every count to zero, e.g. after a benchmark's set-up.
func (c *Counter) Reset() {
	c.mu.Lock()
	clear(c.counts)
	c.mu.Unlock()
}
