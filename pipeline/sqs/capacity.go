package sqs

import (
	"context"
	"sync"
)

// capacity counts free in-flight slots of a subscription.
type capacity struct {
	mu   sync.Mutex
	free int
	wake chan struct{} // one token: something was released
}

func newCapacity(n int) *capacity { return &capacity{free: n, wake: make(chan struct{}, 1)} }

// acquire waits until want slots are free and takes them. Waiting for a full batch rather than
// taking what is free keeps receives at 10 messages under saturation, hence fewer calls.
func (c *capacity) acquire(ctx context.Context, want int) error {
	for {
		c.mu.Lock()
		if c.free >= want {
			c.free -= want
			more := c.free > 0
			c.mu.Unlock()
			if more {
				c.signal() // another waiter may fit in what is left
			}
			return nil
		}
		c.mu.Unlock()
		select {
		case <-c.wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (c *capacity) release(n int) {
	if n <= 0 {
		return
	}
	c.mu.Lock()
	c.free += n
	c.mu.Unlock()
	c.signal()
}

func (c *capacity) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}
