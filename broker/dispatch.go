package broker

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"sync/atomic"
)

// ErrQueueFull is returned (and the message counted as dropped) when the Drop policy meets a full queue.
var ErrQueueFull = errors.New("broker: sink queue full")

// ErrClosed is returned for messages offered after Close began draining the sink queue.
var ErrClosed = errors.New("broker: closed")

// Stats counts what went through the sink queue since the broker started.
type Stats struct {
	Enqueued   uint64 // messages accepted into the queue
	Delivered  uint64 // HandleMessage calls that returned (or panicked: see SinkPanics)
	Dropped    uint64 // messages never handed to the sink (Drop policy on a full queue, or offered after Close)
	Waited     uint64 // publishes that found their queue full and had to wait (Block policy)
	SinkPanics uint64 // HandleMessage calls that panicked (recovered and logged)
	Queued     int    // messages waiting now
}

// workerMark is put in the context given to Sink.HandleMessage, so Republish can tell it is called from a
// sink worker (whose own queue it must not wait on: that would deadlock when the queue is full).
type workerMark struct {
	d     *dispatcher
	shard int
}

type workerKey struct{}

type item struct {
	m    Message
	slot bool // holds one of the shard's slots, released once handled
}

// shard is one worker's FIFO. Ordinary messages take a slot from slots (the bound); messages the worker
// feeds back to itself (Republish from the sink) skip the bound so the worker can never wait on itself.
type shard struct {
	slots chan struct{}
	wake  chan struct{}

	mu     sync.Mutex
	items  []item
	head   int
	closed bool
}

func (s *shard) push(it item) bool {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	s.items = append(s.items, it)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return true
}

// pop returns the next item; ok is false once the shard is closed and empty.
func (s *shard) pop() (it item, ok bool) {
	for {
		s.mu.Lock()
		if s.head < len(s.items) {
			it = s.items[s.head]
			s.items[s.head] = item{}
			s.head++
			if s.head == len(s.items) { // reuse the backing array once drained
				s.items, s.head = s.items[:0], 0
			}
			s.mu.Unlock()
			return it, true
		}
		closed := s.closed
		s.mu.Unlock()
		if closed {
			return item{}, false
		}
		<-s.wake
	}
}

func (s *shard) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.items) - s.head
}

func (s *shard) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// dispatcher hands messages to the Sink on worker goroutines, off the broker's hot path.
type dispatcher struct {
	sink   Sink
	policy Backpressure
	log    *slog.Logger
	shards []*shard

	ctx    context.Context // given to HandleMessage; cancelled if Close gives up draining
	cancel context.CancelFunc
	wg     sync.WaitGroup
	done   chan struct{} // closed once every worker has returned

	abandon atomic.Bool // set when Close gives up: workers discard what is left (counted as dropped)

	enqueued, delivered, dropped, waited, panics atomic.Uint64
}

func newDispatcher(parent context.Context, cfg Config) *dispatcher {
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	d := &dispatcher{
		sink:   cfg.Sink,
		policy: cfg.Backpressure,
		log:    cfg.Logger,
		ctx:    ctx,
		cancel: cancel,
		done:   make(chan struct{}),
	}
	for range cfg.Workers {
		d.shards = append(d.shards, &shard{
			slots: make(chan struct{}, cfg.QueueSize),
			wake:  make(chan struct{}, 1),
		})
	}
	for i := range d.shards {
		d.wg.Add(1)
		go d.work(i)
	}
	go func() {
		d.wg.Wait()
		close(d.done)
	}()
	return d
}

func (d *dispatcher) shardFor(key string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % uint32(len(d.shards))) // #nosec G115 -- one shard per worker goroutine: far fewer than 2^32
}

// offer queues m for the sink. key picks the worker (messages with one key stay in order). ctx bounds the
// wait when the queue is full; a nil-Done ctx waits until there is room or the dispatcher shuts down.
func (d *dispatcher) offer(ctx context.Context, key string, m Message) error {
	idx := d.shardFor(key)
	if mark, ok := ctx.Value(workerKey{}).(workerMark); ok && mark.d == d {
		// Called from a sink worker: queue on that same worker, past the bound, so the worker never waits
		// on a queue only it can drain. Keeps what the sink does in response in causal order.
		return d.push(mark.shard, item{m: m}, m)
	}
	s := d.shards[idx]
	select {
	case s.slots <- struct{}{}:
	default:
		if d.policy == Drop {
			d.dropped.Add(1)
			d.log.Warn("sink queue full, message dropped", "topic", m.Topic, "client", m.ClientID)
			return ErrQueueFull
		}
		d.waited.Add(1)
		select {
		case s.slots <- struct{}{}:
		case <-ctx.Done():
			d.dropped.Add(1)
			return fmt.Errorf("broker: waiting for room in the sink queue: %w", ctx.Err())
		case <-d.done:
			d.dropped.Add(1)
			return ErrClosed
		}
	}
	if err := d.push(idx, item{m: m, slot: true}, m); err != nil {
		<-s.slots
		return err
	}
	return nil
}

func (d *dispatcher) push(idx int, it item, m Message) error {
	if !d.shards[idx].push(it) {
		d.dropped.Add(1)
		d.log.Warn("message offered after close, dropped", "topic", m.Topic, "client", m.ClientID)
		return ErrClosed
	}
	d.enqueued.Add(1)
	return nil
}

func (d *dispatcher) work(idx int) {
	defer d.wg.Done()
	s := d.shards[idx]
	ctx := context.WithValue(d.ctx, workerKey{}, workerMark{d: d, shard: idx})
	for {
		it, ok := s.pop()
		if !ok {
			return
		}
		if d.abandon.Load() {
			d.dropped.Add(1)
		} else {
			d.handle(ctx, it.m)
		}
		if it.slot {
			<-s.slots
		}
	}
}

func (d *dispatcher) handle(ctx context.Context, m Message) {
	defer func() {
		if r := recover(); r != nil {
			d.panics.Add(1)
			d.log.Error("sink panicked", "topic", m.Topic, "client", m.ClientID, "panic", r)
		}
		d.delivered.Add(1)
	}()
	d.sink.HandleMessage(ctx, m)
}

// close stops accepting messages and waits until the workers have handed every queued message to the
// sink, or ctx is done (then the sink's context is cancelled and the rest is reported as an error).
func (d *dispatcher) close(ctx context.Context) error {
	for _, s := range d.shards {
		s.close()
	}
	select {
	case <-d.done:
		d.cancel()
		return nil
	case <-ctx.Done():
		left := d.queued()
		d.abandon.Store(true)
		d.cancel()
		<-d.done // workers finish the HandleMessage calls under way (their ctx is now cancelled)
		return fmt.Errorf("broker: draining the sink queue (%d messages left when giving up): %w", left, ctx.Err())
	}
}

func (d *dispatcher) queued() int {
	n := 0
	for _, s := range d.shards {
		n += s.len()
	}
	return n
}

func (d *dispatcher) stats() Stats {
	return Stats{
		Enqueued:   d.enqueued.Load(),
		Delivered:  d.delivered.Load(),
		Dropped:    d.dropped.Load(),
		Waited:     d.waited.Load(),
		SinkPanics: d.panics.Load(),
		Queued:     d.queued(),
	}
}
