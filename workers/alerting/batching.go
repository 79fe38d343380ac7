package alerting

import (
	"context"
	"errors"
	"sync"
	"time"
)

// BatchingNotifier groups notifications from concurrent handlers (say, many devices overheating
// together) into full PublishBatch calls: a Notify waits up to Linger for others to join, and a
// group is sent as soon as it holds ten. Each caller gets the results of its own notifications.
type BatchingNotifier struct {
	next    Notifier
	linger  time.Duration
	timeout time.Duration

	mu      sync.Mutex
	pending []*notifyCall
	count   int
	timer   *time.Timer
	closed  bool
	sending sync.WaitGroup
}

type notifyCall struct {
	ns   []Notification
	errs []error
	done chan struct{}
}

// ErrNotifierClosed is returned by Notify after Close.
var ErrNotifierClosed = errors.New("alert notifier closed")

// NewBatchingNotifier wraps next. linger is how long a notification may wait for company (default
// 20ms); timeout bounds each underlying send (default 10s), which serves several callers and so does
// not use any one caller's context.
func NewBatchingNotifier(next Notifier, linger, timeout time.Duration) *BatchingNotifier {
	if linger <= 0 {
		linger = 20 * time.Millisecond
	}
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	return &BatchingNotifier{next: next, linger: linger, timeout: timeout}
}

// Notify implements Notifier.
func (b *BatchingNotifier) Notify(ctx context.Context, ns []Notification) []error {
	c := &notifyCall{ns: ns, done: make(chan struct{})}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return fill(len(ns), ErrNotifierClosed)
	}
	b.pending = append(b.pending, c)
	b.count += len(ns)
	if b.count >= maxBatch {
		b.sendLocked()
	} else if b.timer == nil {
		b.timer = time.AfterFunc(b.linger, func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			b.sendLocked()
		})
	}
	b.mu.Unlock()
	select {
	case <-c.done:
		return c.errs
	case <-ctx.Done():
		// The group may still be sent; the caller retries and the claim decides what happens.
		return fill(len(ns), ctx.Err())
	}
}

// sendLocked sends the pending group in the background.
func (b *BatchingNotifier) sendLocked() {
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	group := b.pending
	b.pending, b.count = nil, 0
	if len(group) == 0 {
		return
	}
	b.sending.Add(1)
	go func() {
		defer b.sending.Done()
		var all []Notification
		for _, c := range group {
			all = append(all, c.ns...)
		}
		ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
		errs := b.next.Notify(ctx, all)
		cancel()
		for _, c := range group {
			c.errs, errs = errs[:len(c.ns)], errs[len(c.ns):]
			close(c.done)
		}
	}()
}

// Close sends what is pending, refuses new notifications and waits for sends in progress.
func (b *BatchingNotifier) Close() {
	b.mu.Lock()
	b.closed = true
	b.sendLocked()
	b.mu.Unlock()
	b.sending.Wait()
}

func fill(n int, err error) []error {
	errs := make([]error, n)
	for i := range errs {
		errs[i] = err
	}
	return errs
}
