package sqs

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"path"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// Subscriber receives messages from SQS queues; the watermill topic is the queue name or URL.
//
// Each subscription long-polls with several receivers, holds at most MaxInFlight messages, hands
// them out without waiting for the previous ack (handlers run concurrently), keeps FIFO message
// groups in order, deletes acked messages in batches, makes nacked ones visible again after an
// exponential backoff, and extends the visibility of messages held long.
type Subscriber struct {
	cfg  SubscriberConfig
	urls *queueURLs

	mu      sync.Mutex
	closed  bool
	stopped bool // StopReceiving was called: no new subscriptions
	subs    map[*subscription]struct{}
}

var (
	_ message.Subscriber           = (*Subscriber)(nil)
	_ message.SubscribeInitializer = (*Subscriber)(nil)
)

// NewSubscriber checks cfg and returns a Subscriber.
func NewSubscriber(cfg SubscriberConfig) (*Subscriber, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Subscriber{cfg: cfg, urls: newQueueURLs(cfg.Client), subs: make(map[*subscription]struct{})}, nil
}

// Subscribe starts receiving from the queue named topic (or the queue URL topic). The channel is
// closed when ctx ends or Close is called, after the messages handed out were acked or nacked (or
// CloseTimeout passed) and the pending deletes were sent.
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	if s.isClosed() {
		return nil, ErrSubscriberClosed
	}
	url, err := s.urls.resolve(ctx, topic)
	if err != nil {
		return nil, err
	}
	sub := newSubscription(ctx, s.cfg, url)
	s.mu.Lock()
	if s.closed || s.stopped {
		s.mu.Unlock()
		sub.stop() // never started: only its contexts to release
		sub.cancelPoll()
		sub.cancelMsgs()
		return nil, ErrSubscriberClosed
	}
	s.subs[sub] = struct{}{}
	s.mu.Unlock()
	sub.start(func() {
		s.mu.Lock()
		delete(s.subs, sub)
		s.mu.Unlock()
	})
	return sub.out, nil
}

// SubscribeInitialize creates the queue named topic (a FIFO queue for a name ending in ".fifo")
// with CreateQueueAttributes. Creating a queue that exists with the same attributes is no error.
// A queue URL is taken as existing.
func (s *Subscriber) SubscribeInitialize(topic string) error {
	if s.isClosed() {
		return ErrSubscriberClosed
	}
	if isURL(topic) {
		return nil
	}
	attrs := maps.Clone(s.cfg.CreateQueueAttributes)
	if isFIFO(topic) {
		if attrs == nil {
			attrs = make(map[string]string, 1)
		}
		attrs[string(types.QueueAttributeNameFifoQueue)] = "true"
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.CallTimeout)
	defer cancel()
	out, err := s.cfg.Client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(topic), Attributes: attrs})
	if err != nil {
		return fmt.Errorf("sqs: creating queue %q: %w", topic, err)
	}
	s.urls.set(topic, aws.ToString(out.QueueUrl))
	return nil
}

// StopReceiving makes every subscription stop receiving and handing out messages at once, without
// waiting: a poll in progress finishes and what it brought is released (visible again at once),
// while messages already handed out can still be acked or nacked, with their contexts intact. A
// graceful shutdown calls it first, so the queues are left alone while in-flight work finishes:
// otherwise every message received during the drain would be handed back with its receive count
// one higher, which counts against a dead-letter limit. CloseTimeout counts from here; Close still
// waits for the rest.
func (s *Subscriber) StopReceiving() {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.stopAll()
}

// Close ends every subscription as described on Subscribe and waits for them. It is safe to call
// more than once.
func (s *Subscriber) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	for _, sub := range s.stopAll() {
		<-sub.done
	}
	return nil
}

// stopAll stops every current subscription (Subscribe refuses new ones once closed or stopped) and
// returns them.
func (s *Subscriber) stopAll() []*subscription {
	s.mu.Lock()
	subs := make([]*subscription, 0, len(s.subs))
	for sub := range s.subs {
		subs = append(subs, sub)
	}
	s.mu.Unlock()
	for _, sub := range subs {
		sub.stop()
	}
	return subs
}

func (s *Subscriber) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// subscription is one Subscribe call: its receivers, the messages it holds and its batchers.
type subscription struct {
	cfg    SubscriberConfig
	client SubscriberAPI
	log    *slog.Logger
	url    string
	fifo   bool
	out    chan *message.Message

	recvCtx    context.Context // ends receiving and handing out: Subscribe's ctx or Close
	stop       context.CancelFunc
	pollCtx    context.Context // for ReceiveMessage calls: a poll in progress is let finish
	cancelPoll context.CancelFunc
	msgCtx     context.Context // parent of every message's context
	cancelMsgs context.CancelFunc
	abort      chan struct{} // closed after CloseTimeout: stop waiting for acks

	queue      string // the queue's name, for OnInFlight
	capacity   *capacity
	deletes    *batcher
	visibility *batcher

	mu   sync.Mutex
	held map[*received]struct{}

	receivers     sync.WaitGroup
	runners       sync.WaitGroup
	stopHeartbeat chan struct{}
	heartbeatDone chan struct{}
	done          chan struct{}
}

func newSubscription(ctx context.Context, cfg SubscriberConfig, url string) *subscription {
	s := &subscription{
		cfg: cfg, client: cfg.Client, url: url, fifo: isFIFO(url), queue: path.Base(url),
		log:           cfg.Logger.With("queue", url),
		out:           make(chan *message.Message),
		abort:         make(chan struct{}),
		capacity:      newCapacity(cfg.MaxInFlight),
		held:          make(map[*received]struct{}, cfg.MaxInFlight),
		stopHeartbeat: make(chan struct{}),
		heartbeatDone: make(chan struct{}),
		done:          make(chan struct{}),
	}
	s.recvCtx, s.stop = context.WithCancel(ctx)
	s.pollCtx, s.cancelPoll = context.WithCancel(context.WithoutCancel(ctx))
	s.msgCtx, s.cancelMsgs = context.WithCancel(ctx)
	return s
}

func (s *subscription) start(onDone func()) {
	s.deletes = newBatcher("DeleteMessageBatch", s.url, deleteCall(s.client, s.url), nil, s.cfg)
	s.visibility = newBatcher("ChangeMessageVisibilityBatch", s.url, visibilityCall(s.client, s.url), s.settled, s.cfg)
	s.receivers.Add(s.cfg.Receivers)
	for range s.cfg.Receivers {
		go s.receive()
	}
	go s.heartbeat()
	go s.lifecycle(onDone)
}

// lifecycle shuts the subscription down once receiving ends, in an order that loses nothing:
// polls in progress finish (their messages are released), handed-out messages are acked or nacked
// (both bounded by CloseTimeout), then heartbeats stop and pending batches are sent.
func (s *subscription) lifecycle(onDone func()) {
	defer close(s.done)
	<-s.recvCtx.Done()
	drained := make(chan struct{})
	go func() {
		s.receivers.Wait() // receivers add runners, so they are waited for first
		s.runners.Wait()
		close(drained)
	}()
	timer := time.NewTimer(s.cfg.CloseTimeout)
	select {
	case <-drained:
	case <-timer.C:
		s.log.Warn("sqs: messages still not acked or nacked after CloseTimeout; releasing them",
			"messages", s.heldCount(), "close_timeout", s.cfg.CloseTimeout)
		s.cancelPoll()
		close(s.abort)
		<-drained
	}
	timer.Stop()
	s.cancelPoll()
	s.cancelMsgs()
	close(s.out)
	close(s.stopHeartbeat)
	<-s.heartbeatDone
	s.deletes.close()
	s.visibility.close()
	onDone()
}

func (s *subscription) receive() {
	defer s.receivers.Done()
	want := min(maxBatchEntries, s.cfg.MaxInFlight)
	in := &sqs.ReceiveMessageInput{
		QueueUrl:              &s.url,
		MaxNumberOfMessages:   int32(want),                                  // #nosec G115 -- at most maxBatchEntries (10)
		WaitTimeSeconds:       int32(s.cfg.WaitTime / time.Second),          // #nosec G115 -- Validate: 0 to 20 s
		VisibilityTimeout:     int32(s.cfg.VisibilityTimeout / time.Second), // #nosec G115 -- Validate: 1 s to 12 h
		MessageAttributeNames: []string{"All"},
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{
			types.MessageSystemAttributeNameApproximateReceiveCount,
			types.MessageSystemAttributeNameSentTimestamp,
			types.MessageSystemAttributeNameMessageGroupId,
			types.MessageSystemAttributeNameMessageDeduplicationId,
		},
	}
	wait := s.cfg.RetryBackoff
	for {
		if err := s.capacity.acquire(s.recvCtx, want); err != nil {
			return
		}
		if s.recvCtx.Err() != nil {
			s.capacity.release(want)
			return
		}
		// A poll is not cancelled when the subscription ends: SQS may already have taken messages
		// for it, which would stay invisible for the visibility timeout. It finishes (within
		// WaitTime, or CloseTimeout) and run releases what it brought.
		start := time.Now()
		out, err := s.client.ReceiveMessage(s.pollCtx, in)
		if err != nil {
			s.capacity.release(want)
			if s.recvCtx.Err() != nil {
				return
			}
			s.log.Error("sqs: receive failed", "error", err, "retry_in", wait)
			select {
			case <-time.After(wait):
			case <-s.recvCtx.Done():
				return
			}
			wait = min(2*wait, 5*time.Second)
			continue
		}
		wait = s.cfg.RetryBackoff
		s.capacity.release(want - len(out.Messages))
		s.dispatch(out.Messages, start)
	}
}

// dispatch holds a received batch and starts one runner per message, or per message group on a
// FIFO queue, so a group's messages go out one at a time in order.
func (s *subscription) dispatch(msgs []types.Message, start time.Time) {
	if len(msgs) == 0 {
		return
	}
	// Visibility started after the call was made: counting from its start is on the safe side.
	deadline := start.Add(s.cfg.VisibilityTimeout).UnixNano()
	batch := make([]*received, len(msgs))
	for i := range msgs {
		batch[i] = fromSQS(s.msgCtx, msgs[i])
		batch[i].deadline = deadline
	}
	s.mu.Lock()
	for _, r := range batch {
		s.held[r] = struct{}{}
	}
	// Reported under the lock so reports arrive in order and a gauge never ends on a stale value.
	s.reportInFlight(len(s.held))
	s.mu.Unlock()
	if !s.fifo {
		s.runners.Add(len(batch))
		for i := range batch {
			go s.run(batch[i : i+1])
		}
		return
	}
	for _, g := range groupInOrder(batch) {
		s.runners.Add(1)
		go s.run(g)
	}
}

// groupInOrder splits a FIFO batch by message group, keeping the order within each group.
func groupInOrder(batch []*received) [][]*received {
	var groups [][]*received
next:
	for _, r := range batch {
		for i, g := range groups {
			if g[0].group == r.group {
				groups[i] = append(g, r)
				continue next
			}
		}
		groups = append(groups, []*received{r})
	}
	return groups
}

// run hands out msgs one after the other, each once the previous was acked. A nack makes the
// message visible again after the backoff, and releases those after it.
func (s *subscription) run(msgs []*received) {
	defer s.runners.Done()
	for i, r := range msgs {
		if s.recvCtx.Err() != nil {
			s.settle(msgs[i:], 0)
			return
		}
		select {
		case s.out <- r.msg:
		case <-s.recvCtx.Done():
			s.settle(msgs[i:], 0)
			return
		}
		select {
		case <-r.msg.Acked():
			s.ack(r)
		case <-r.msg.Nacked():
			// Only the nacked message waits out the backoff. Those after it (FIFO) are released at
			// once: SQS still returns none of the group while the nacked one is in flight, so it
			// comes back first.
			s.settle(msgs[i:i+1], s.nackVisibility(r.receiveCount))
			s.settle(msgs[i+1:], 0)
			return
		case <-s.abort:
			select {
			case <-r.msg.Acked(): // acked just as CloseTimeout ran out: still delete it
				s.ack(r)
				i++
			default:
			}
			s.settle(msgs[i:], 0)
			return
		}
	}
}

func (s *subscription) ack(r *received) {
	r.cancel()
	s.mu.Lock()
	delete(s.held, r)
	// Reported under the lock so reports arrive in order and a gauge never ends on a stale value.
	s.reportInFlight(len(s.held))
	s.mu.Unlock()
	s.deletes.add(handleEntry{id: r.id, handle: r.handle})
	s.capacity.release(1)
}

// settle gives messages back to SQS, visible again after the given seconds.
func (s *subscription) settle(rs []*received, visibility int32) {
	s.mu.Lock()
	for _, r := range rs {
		delete(s.held, r)
	}
	// Reported under the lock so reports arrive in order and a gauge never ends on a stale value.
	s.reportInFlight(len(s.held))
	s.mu.Unlock()
	for _, r := range rs {
		r.cancel()
		s.visibility.add(handleEntry{id: r.id, handle: r.handle, visibility: visibility})
	}
	s.capacity.release(len(rs))
}

// nackVisibility is the backoff for a message received count times: initial × 2^(count−1), capped,
// in whole seconds rounded up.
func (s *subscription) nackVisibility(count int) int32 {
	return nackBackoff(s.cfg.NackBackoffInitial, s.cfg.NackBackoffMax, count)
}

func nackBackoff(initial, limit time.Duration, count int) int32 {
	d := initial
	for i := 1; i < count && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	return int32((d + time.Second - 1) / time.Second) // #nosec G115 -- d ≤ NackBackoffMax, which Validate keeps ≤ 12 h
}

// heartbeat extends the visibility of held messages whose visibility ends within two intervals.
func (s *subscription) heartbeat() {
	defer close(s.heartbeatDone)
	t := time.NewTicker(s.cfg.HeartbeatInterval)
	defer t.Stop()
	vis := int32(s.cfg.VisibilityTimeout / time.Second) // #nosec G115 -- Validate: 1 s to 12 h
	var due []handleEntry
	for {
		select {
		case <-s.stopHeartbeat:
			return
		case now := <-t.C:
			limit := now.Add(2 * s.cfg.HeartbeatInterval).UnixNano()
			deadline := now.Add(s.cfg.VisibilityTimeout).UnixNano()
			due = due[:0]
			s.mu.Lock()
			for r := range s.held {
				if r.deadline < limit {
					r.deadline = deadline
					due = append(due, handleEntry{id: r.id, handle: r.handle, visibility: vis, beat: r})
				}
			}
			s.mu.Unlock()
			for _, e := range due {
				s.visibility.add(e)
			}
		}
	}
}

// settled says a failed heartbeat extension raced its message's ack or nack, which is harmless.
func (s *subscription) settled(f entryFailure) bool {
	if f.entry.beat == nil {
		return false
	}
	s.mu.Lock()
	_, held := s.held[f.entry.beat]
	s.mu.Unlock()
	return !held
}

// reportInFlight tells the configured observer how many messages the subscription holds.
func (s *subscription) reportInFlight(n int) {
	if s.cfg.OnInFlight != nil {
		s.cfg.OnInFlight(s.queue, n)
	}
}

func (s *subscription) heldCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.held)
}
