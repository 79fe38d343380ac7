package kinesis

import (
	"context"
	"errors"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/google/uuid"
)

// uuidNamespace derives the watermill UUID of a raw record from stream/shard/sequence number, so a
// redelivered record always has the same UUID.
var uuidNamespace = uuid.MustParse("3f0c5a36-8d7e-4c39-9a63-6f1f5d0b7e21")

// recordUUID is the deterministic UUID of a record without an envelope.
func recordUUID(stream, shardID, seq string) string {
	return uuid.NewSHA1(uuidNamespace, []byte(stream+"/"+shardID+"/"+seq)).String()
}

// exitReason says why a shard reader stopped.
type exitReason int

const (
	exitReleased exitReason = iota // graceful stop: final checkpoint written, lease released
	exitEnded                      // SHARD_END reached and checkpointed, lease released
	exitLost                       // lease lost or taken: stopped without writing
)

// entry is one record in a shard's window. msg is its current delivery (nil when it waits for a
// first delivery or a redelivery after a Nack).
type entry struct {
	seq     string
	uuid    string
	payload []byte
	meta    map[string]string
	pk      string
	arrival time.Time

	msg    *message.Message
	cancel context.CancelFunc
	acked  bool
}

// shardReader reads one leased shard and delivers its records, several in flight, in order.
//
// The window win[head:] holds the records handed out and not yet checkpointable: win[head:next]
// were delivered (or acked), win[next:] wait for a redelivery after a Nack. Only the head's
// Ack/Nack is watched: the checkpoint can only move when the head is acked, and a Nack is acted on
// when its message becomes the head. On a Nack of the head, the head and every later delivery not
// yet acked are withdrawn (their message contexts cancelled, later Acks of them ignored) and
// delivered again in order; later deliveries already acked stay acked.
type shardReader struct {
	w          *worker
	shardID    string
	hasParents bool
	stop       chan struct{} // closed for a graceful stop
	lost       chan struct{} // closed when the lease is lost

	win     []entry
	head    int
	next    int
	fetched []entry

	iterator     string
	readPos      string // last sequence number read from the shard
	acked        string // every record up to here is acked
	checkpointed string // last checkpoint written
	ended        bool   // GetRecords returned no NextShardIterator
	idle         time.Duration
	reason       exitReason
}

func (r *shardReader) run(ctx context.Context) {
	cfg := &r.w.cfg
	log := r.w.log.With("shard", r.shardID)
	ckpt := time.NewTicker(cfg.CheckpointInterval)
	defer ckpt.Stop()
	fetchTimer := time.NewTimer(0)
	defer fetchTimer.Stop()
	nackScan := time.NewTicker(cfg.NackResendDelay)
	defer nackScan.Stop()
	nackScanDue := false
	var (
		draining   bool
		drainTimer <-chan time.Time
		resendAt   time.Time
		resend     *time.Timer
		// toSend is the next delivery, built once and kept until sent or discarded.
		toSend       *message.Message
		toSendCancel context.CancelFunc
	)
	discard := func() {
		if toSend != nil {
			toSendCancel()
			toSend, toSendCancel = nil, nil
		}
	}
	defer func() {
		discard()
		if resend != nil {
			resend.Stop()
		}
		for i := r.head; i < len(r.win); i++ {
			if r.win[i].cancel != nil {
				r.win[i].cancel()
			}
		}
	}()

	for {
		r.settleHead(log)
		inFlight := len(r.win) - r.head
		if r.ended && len(r.fetched) == 0 && inFlight == 0 {
			if r.finish(ctx, log, checkpointShardEnd) {
				r.reason = exitEnded
			}
			return
		}
		if draining && (inFlight == 0 || r.win[r.head].msg == nil) {
			r.finish(ctx, log, r.acked)
			return
		}

		// The next delivery: a pending redelivery, else a fresh record if the window has room.
		var out chan<- *message.Message
		if !draining {
			for r.next < len(r.win) && r.win[r.next].acked {
				r.next++
			}
			if r.next == len(r.win) && len(r.fetched) > 0 && inFlight < cfg.MaxInFlight {
				r.win = append(r.win, r.fetched[0])
				r.fetched[0] = entry{}
				r.fetched = r.fetched[1:]
			}
			if r.next < len(r.win) {
				now := time.Now()
				if now.Before(resendAt) {
					if resend == nil {
						resend = time.NewTimer(resendAt.Sub(now))
					}
				} else {
					if toSend == nil {
						toSend, toSendCancel = r.newMessage(&r.win[r.next])
					}
					out = r.w.out
				}
			}
		}

		var acked, nacked <-chan struct{}
		if r.head < r.next && r.win[r.head].msg != nil {
			acked, nacked = r.win[r.head].msg.Acked(), r.win[r.head].msg.Nacked()
		}
		var fetchC <-chan time.Time
		if !r.ended && !draining && len(r.fetched) == 0 {
			fetchC = fetchTimer.C
		}
		var resendC <-chan time.Time
		if resend != nil {
			resendC = resend.C
		}

		select {
		case out <- toSend:
			e := &r.win[r.next]
			e.msg, e.cancel = toSend, toSendCancel
			toSend, toSendCancel = nil, nil
			r.next++
		case <-acked:
		case <-nacked:
		case <-resendC:
			resend = nil
		case <-nackScan.C:
			nackScanDue = r.next-r.head > 1
		case <-fetchC:
			fetchTimer.Reset(r.fetch(ctx, log))
		case <-ckpt.C:
			if err := r.writeCheckpoint(ctx, r.acked, false); errors.Is(err, errLeaseLost) {
				log.Info("kinesis: lease lost at checkpoint", "worker", r.w.id)
				r.reason = exitLost
				return
			} else if err != nil {
				log.Warn("kinesis: checkpoint failed, will retry", "error", err)
			}
		case <-r.stop:
			if !draining {
				draining = true
				drainTimer = time.After(cfg.DrainTimeout)
				discard()
				r.dropUnsent()
			}
		case <-drainTimer:
			log.Warn("kinesis: drain timed out with messages in flight", "in_flight", len(r.win)-r.head)
			r.finish(ctx, log, r.acked)
			return
		case <-r.lost:
			r.reason = exitLost
			return
		case <-ctx.Done():
			r.reason = exitLost
			return
		}

		// A Nack rewinds delivery to the nacked record. The head's Nack wakes the loop at once; a
		// Nack further in the window is found by a scan every NackResendDelay.
		k := -1
		if nackScanDue || (r.head < r.next && r.win[r.head].msg != nil && isClosed(r.win[r.head].msg.Nacked())) {
			k = r.firstNacked()
			nackScanDue = false
		}
		if k >= 0 {
			discard()
			r.rewind(k)
			resendAt = time.Now().Add(cfg.NackResendDelay)
			if resend != nil {
				resend.Stop()
				resend = nil
			}
		}
	}
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// firstNacked returns the window index of the oldest delivered message that was nacked, or -1.
func (r *shardReader) firstNacked() int {
	for i := r.head; i < r.next; i++ {
		if e := &r.win[i]; !e.acked && e.msg != nil && isClosed(e.msg.Nacked()) {
			return i
		}
	}
	return -1
}

// settleHead pops acked entries off the head, moving the acked position forward.
func (r *shardReader) settleHead(log interface{ Debug(string, ...any) }) {
	for r.head < r.next {
		e := &r.win[r.head]
		if !e.acked {
			if e.msg == nil {
				return
			}
			select {
			case <-e.msg.Acked():
				e.acked = true
			default:
				return
			}
		}
		if e.cancel != nil {
			e.cancel()
		}
		r.acked = e.seq
		r.win[r.head] = entry{}
		r.head++
	}
	if r.head == len(r.win) {
		r.win, r.head, r.next = r.win[:0], 0, 0
	} else if r.head > 0 && r.head >= cap(r.win)/2 {
		n := copy(r.win, r.win[r.head:])
		clear(r.win[n:])
		r.win, r.next, r.head = r.win[:n], r.next-r.head, 0
	}
}

// rewind withdraws the nacked delivery at window index k and every later delivery not yet acked,
// so they are delivered again in order. Deliveries before k stay in flight.
func (r *shardReader) rewind(k int) {
	for i := k; i < r.next; i++ {
		e := &r.win[i]
		if e.acked || e.msg == nil {
			continue
		}
		if i > k {
			select {
			case <-e.msg.Acked():
				e.acked = true
				continue
			default:
			}
		}
		e.cancel()
		e.msg, e.cancel = nil, nil
	}
	r.next = k
}

// dropUnsent forgets records not delivered yet, for a graceful stop: the next owner reads them
// again from the checkpoint.
func (r *shardReader) dropUnsent() {
	if len(r.fetched) > 0 || r.next < len(r.win) {
		r.ended = false // records of this shard are left unread: it must not be marked SHARD_END
	}
	clear(r.fetched)
	r.fetched = r.fetched[:0]
	for i := r.next; i < len(r.win); i++ {
		if r.win[i].cancel != nil {
			r.win[i].cancel()
		}
	}
	clear(r.win[r.next:])
	r.win = r.win[:r.next]
}

// newMessage builds a delivery of e with a context of its own, cancelled once the delivery is
// settled or withdrawn.
func (r *shardReader) newMessage(e *entry) (*message.Message, context.CancelFunc) {
	msg := message.NewMessage(e.uuid, e.payload)
	for k, v := range e.meta {
		msg.Metadata[k] = v
	}
	msg.Metadata[MetadataStream] = r.w.stream
	msg.Metadata[MetadataShardID] = r.shardID
	msg.Metadata[MetadataSequenceNumber] = e.seq
	msg.Metadata[MetadataPartitionKey] = e.pk
	if !e.arrival.IsZero() {
		msg.Metadata[MetadataArrivalTime] = e.arrival.UTC().Format(time.RFC3339Nano)
	}
	ctx, cancel := context.WithCancel(r.w.msgCtx)
	msg.SetContext(ctx)
	return msg, cancel
}

// fetch makes one GetRecords call (getting an iterator first if needed) and returns how long to
// wait before the next one: at least PollInterval (5 calls/s/shard), doubling up to
// IdleBackoffMax while the shard is idle or the call is throttled.
func (r *shardReader) fetch(ctx context.Context, log interface {
	Warn(string, ...any)
	Debug(string, ...any)
}) time.Duration {
	cfg := &r.w.cfg
	grow := func() time.Duration {
		r.idle = min(max(2*r.idle, cfg.PollInterval), cfg.IdleBackoffMax)
		return r.idle
	}
	if r.iterator == "" {
		in := &kinesis.GetShardIteratorInput{StreamName: aws.String(r.w.stream), ShardId: aws.String(r.shardID)}
		switch {
		case r.readPos != "":
			in.ShardIteratorType, in.StartingSequenceNumber = types.ShardIteratorTypeAfterSequenceNumber, aws.String(r.readPos)
		case r.hasParents:
			in.ShardIteratorType = types.ShardIteratorTypeTrimHorizon
		case cfg.StartPosition == StartLatest:
			// LATEST is pinned to a time in the lease, so a later owner starts from the same point.
			ts, err := r.w.table.pinStart(ctx, r.shardID, r.w.id, time.Now())
			if err != nil {
				if ctx.Err() == nil {
					log.Warn("kinesis: recording the LATEST start time failed", "error", err)
				}
				return grow()
			}
			in.ShardIteratorType, in.Timestamp = types.ShardIteratorTypeAtTimestamp, &ts
		default:
			in.ShardIteratorType = types.ShardIteratorType(cfg.StartPosition)
		}
		out, err := r.w.s.cfg.Kinesis.GetShardIterator(ctx, in)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("kinesis: GetShardIterator failed", "error", err)
			}
			return grow()
		}
		r.iterator = aws.ToString(out.ShardIterator)
		if r.iterator == "" {
			// A closed shard whose records have all expired.
			r.ended = true
			return cfg.PollInterval
		}
	}
	out, err := r.w.s.cfg.Kinesis.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: aws.String(r.iterator), Limit: aws.Int32(cfg.GetRecordsLimit)})
	if err != nil {
		var expired *types.ExpiredIteratorException
		switch {
		case errors.As(err, &expired):
			// Re-get the iterator after the last record read (records between the checkpoint and
			// there are in memory).
			r.iterator = ""
			return cfg.PollInterval
		case retryableKinesisError(err):
			log.Debug("kinesis: GetRecords throttled", "error", err)
			return grow()
		case ctx.Err() != nil:
			return cfg.PollInterval
		default:
			log.Warn("kinesis: GetRecords failed", "error", err)
			r.iterator = ""
			return grow()
		}
	}
	for i := range out.Records {
		rec := &out.Records[i]
		seq := aws.ToString(rec.SequenceNumber)
		if compareSeq(seq, r.readPos) <= 0 {
			continue // never hand out a record twice from one read position
		}
		r.readPos = seq
		r.fetched = append(r.fetched, r.w.decode(r.shardID, rec))
	}
	behind := aws.ToInt64(out.MillisBehindLatest)
	r.w.s.reportLag(r.w.stream, r.shardID, behind)
	if out.NextShardIterator == nil {
		r.ended = true
		r.iterator = ""
	} else {
		r.iterator = *out.NextShardIterator
	}
	if len(out.Records) == 0 && behind == 0 {
		return grow()
	}
	r.idle = 0
	return cfg.PollInterval
}

// writeCheckpoint writes seq if it moved; release also gives the lease up.
func (r *shardReader) writeCheckpoint(ctx context.Context, seq string, release bool) error {
	if seq == r.checkpointed {
		seq = ""
	}
	if seq == "" && !release {
		return nil
	}
	if err := r.w.table.checkpoint(ctx, r.shardID, r.w.id, seq, release); err != nil {
		return err
	}
	if seq != "" {
		r.checkpointed = seq
	}
	return nil
}

// finish writes the final checkpoint and releases the lease, retrying transient errors a few
// times. It reports whether the write succeeded.
func (r *shardReader) finish(ctx context.Context, log interface {
	Info(string, ...any)
	Warn(string, ...any)
}, seq string) bool {
	for attempt := 1; attempt <= 5; attempt++ {
		err := r.writeCheckpoint(ctx, seq, true)
		if err == nil {
			log.Info("kinesis: shard released", "worker", r.w.id, "checkpoint", seq)
			return true
		}
		if errors.Is(err, errLeaseLost) {
			r.reason = exitLost
			return false
		}
		log.Warn("kinesis: final checkpoint failed", "error", err, "attempt", attempt)
		if sleepCtx(ctx, backoff(100*time.Millisecond, time.Second, attempt)) != nil {
			break
		}
	}
	r.reason = exitLost
	return false
}
