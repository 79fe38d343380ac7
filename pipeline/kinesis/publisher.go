package kinesis

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go"
)

// Publisher is a watermill message.Publisher writing to Kinesis with PutRecords. The topic is the
// stream name.
//
// Concurrent Publish calls on one stream are group-committed: while one PutRecords call is in
// flight, records of other calls queue, and the next call carries all of them (up to 500 records
// and 5 MiB). Whoever publishes first flushes (no background goroutine); once its own records are
// settled it hands the flushing over to the oldest waiting caller. Every Publish still returns only
// after its own records are written or have failed.
type Publisher struct {
	cfg PublisherConfig

	mu       sync.Mutex
	closed   bool
	streams  map[string]bool // streams known to exist, when CreateStream is set
	queues   map[string]*streamQueue
	inFlight sync.WaitGroup
}

// streamQueue holds the Publish calls waiting for one stream.
type streamQueue struct {
	mu      sync.Mutex
	pending []*publishRequest // FIFO; the first may be partly taken already
	taken   int               // entries of pending[0] already in a batch
	busy    bool              // someone is flushing
}

// publishRequest is one Publish call's records.
type publishRequest struct {
	entries   []types.PutRecordsRequestEntry
	remaining int   // entries not settled yet (guarded by the queue's mu)
	err       error // first failure among its entries
	done      chan struct{}
	lead      chan struct{} // closed to make this caller the flusher
}

var _ message.Publisher = (*Publisher)(nil)

// NewPublisher validates cfg and returns a Publisher.
func NewPublisher(cfg PublisherConfig) (*Publisher, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Publisher{cfg: cfg, streams: map[string]bool{}, queues: map[string]*streamQueue{}}, nil
}

// PublishError is returned when records are still failing after MaxAttempts.
type PublishError struct {
	Stream    string
	Failed    int    // records of the PutRecords batch not written
	ErrorCode string // the last per-entry error code or API error
	Attempts  int
	Err       error // the last API error, if any
}

func (e *PublishError) Error() string {
	return fmt.Sprintf("kinesis: publishing to %s: %d records not written after %d attempts (last error %s)", e.Stream, e.Failed, e.Attempts, e.ErrorCode)
}

func (e *PublishError) Unwrap() error { return e.Err }

// RecordTooLargeError is returned for a message whose record exceeds the 1 MiB Kinesis limit.
type RecordTooLargeError struct {
	UUID string
	Size int
}

func (e *RecordTooLargeError) Error() string {
	return fmt.Sprintf("kinesis: message %s: record of %d bytes exceeds the 1 MiB limit", e.UUID, e.Size)
}

// Publish writes msgs to the stream topic, in PutRecords calls of up to 500 records and 5 MiB.
// It returns once every record is written or the retries are spent. Messages are checked first:
// an invalid one (record too large, partition key too long) fails the call before anything is
// sent. Records of one call keep their order within a partition key unless some entries had to be
// retried.
func (p *Publisher) Publish(topic string, msgs ...*message.Message) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	p.inFlight.Add(1)
	p.mu.Unlock()
	defer p.inFlight.Done()
	if topic == "" {
		return &ConfigError{"topic", "stream name is empty"}
	}
	if len(msgs) == 0 {
		return nil
	}
	ctx := context.Background()
	if msgs[0].Context() != nil {
		// Keep values (tracing) but not cancellation: a message must not be half-published.
		ctx = context.WithoutCancel(msgs[0].Context())
	}
	if err := p.ensureStream(ctx, topic); err != nil {
		return err
	}
	req := &publishRequest{entries: make([]types.PutRecordsRequestEntry, len(msgs)), done: make(chan struct{}), lead: make(chan struct{})}
	for i, msg := range msgs {
		entry, err := p.entry(msg)
		if err != nil {
			return err
		}
		req.entries[i] = entry
	}
	req.remaining = len(req.entries)

	q := p.queue(topic)
	q.mu.Lock()
	q.pending = append(q.pending, req)
	if q.busy {
		q.mu.Unlock()
		select {
		case <-req.done:
			return req.err
		case <-req.lead:
		}
	} else {
		q.busy = true
		q.mu.Unlock()
	}
	p.flush(ctx, topic, q, req)
	<-req.done
	return req.err
}

func (p *Publisher) queue(stream string) *streamQueue {
	p.mu.Lock()
	defer p.mu.Unlock()
	q := p.queues[stream]
	if q == nil {
		q = &streamQueue{}
		p.queues[stream] = q
	}
	return q
}

// flush sends batches from the queue until own is settled, then hands over to a waiting caller.
func (p *Publisher) flush(ctx context.Context, stream string, q *streamQueue, own *publishRequest) {
	var batch []types.PutRecordsRequestEntry
	var owners []*publishRequest
	for {
		q.mu.Lock()
		if own.remaining == 0 {
			if len(q.pending) == 0 {
				q.busy = false
			} else {
				close(q.pending[0].lead)
			}
			q.mu.Unlock()
			return
		}
		batch, owners = batch[:0], owners[:0]
		size := 0
		for len(q.pending) > 0 && len(batch) < maxRecordsPerPut {
			r := q.pending[0]
			e := r.entries[q.taken]
			n := len(e.Data) + len(aws.ToString(e.PartitionKey))
			if size+n > maxBytesPerPut {
				break
			}
			batch, owners, size = append(batch, e), append(owners, r), size+n
			q.taken++
			if q.taken == len(r.entries) {
				q.pending[0] = nil
				q.pending, q.taken = q.pending[1:], 0
			}
		}
		q.mu.Unlock()

		failed, err := p.put(ctx, stream, batch)

		q.mu.Lock()
		for _, i := range failed {
			if owners[i].err == nil {
				owners[i].err = err
			}
		}
		for _, r := range owners {
			r.remaining--
			if r.remaining == 0 {
				close(r.done)
			}
		}
		q.mu.Unlock()
	}
}

func (p *Publisher) entry(msg *message.Message) (types.PutRecordsRequestEntry, error) {
	pk := msg.Metadata.Get(MetadataPartitionKey)
	if pk == "" {
		pk = msg.UUID
	}
	if pk == "" {
		return types.PutRecordsRequestEntry{}, fmt.Errorf("kinesis: message has neither %s metadata nor a UUID for the partition key", MetadataPartitionKey)
	}
	if len(pk) > maxPartitionKeyLen {
		return types.PutRecordsRequestEntry{}, fmt.Errorf("kinesis: message %s: partition key of %d bytes exceeds %d", msg.UUID, len(pk), maxPartitionKeyLen)
	}
	data := []byte(msg.Payload)
	if !p.cfg.RawPayload {
		data = appendEnvelope(make([]byte, 0, envelopeSize(msg.UUID, msg.Metadata, msg.Payload)), msg.UUID, msg.Metadata, msg.Payload)
	}
	if len(data)+len(pk) > maxBytesPerRecord {
		return types.PutRecordsRequestEntry{}, &RecordTooLargeError{UUID: msg.UUID, Size: len(data) + len(pk)}
	}
	return types.PutRecordsRequestEntry{Data: data, PartitionKey: aws.String(pk)}, nil
}

// put writes one batch, retrying the failed entries (per-entry errors such as
// ProvisionedThroughputExceededException, and throttled or failed calls) with backoff. It returns
// the indices of the entries not written and the error that explains them.
func (p *Publisher) put(ctx context.Context, stream string, entries []types.PutRecordsRequestEntry) ([]int, error) {
	idx := make([]int, len(entries))
	for i := range idx {
		idx[i] = i
	}
	pending := entries
	var lastCode string
	var lastErr error
	for attempt := 1; ; attempt++ {
		out, err := p.cfg.Client.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String(stream), Records: pending})
		switch {
		case err != nil && !retryableKinesisError(err):
			return idx, fmt.Errorf("kinesis: PutRecords to %s: %w", stream, err)
		case err != nil:
			lastErr, lastCode = err, errorCode(err)
		case aws.ToInt32(out.FailedRecordCount) == 0:
			return nil, nil
		default:
			// Keep only the failed entries, in their original order.
			var failed []types.PutRecordsRequestEntry
			var failedIdx []int
			for i, r := range out.Records {
				if r.ErrorCode != nil && i < len(pending) {
					failed = append(failed, pending[i])
					failedIdx = append(failedIdx, idx[i])
					lastCode = aws.ToString(r.ErrorCode)
				}
			}
			if len(failed) > 0 { // FailedRecordCount without per-entry codes: retry all
				pending, idx = failed, failedIdx
			}
			lastErr = nil
		}
		if attempt >= p.cfg.MaxAttempts {
			return idx, &PublishError{Stream: stream, Failed: len(pending), ErrorCode: lastCode, Attempts: attempt, Err: lastErr}
		}
		p.cfg.Logger.Debug("kinesis: retrying PutRecords", "stream", stream, "records", len(pending), "attempt", attempt, "error", lastCode)
		if err := sleepCtx(ctx, backoff(p.cfg.RetryBaseDelay, p.cfg.RetryMaxDelay, attempt)); err != nil {
			return idx, err
		}
	}
}

func (p *Publisher) ensureStream(ctx context.Context, stream string) error {
	if !p.cfg.CreateStream {
		return nil
	}
	p.mu.Lock()
	known := p.streams[stream]
	p.mu.Unlock()
	if known {
		return nil
	}
	if err := createStream(ctx, p.cfg.Client, stream, p.cfg.ShardCount); err != nil {
		return err
	}
	p.mu.Lock()
	p.streams[stream] = true
	p.mu.Unlock()
	return nil
}

// Close waits for running Publish calls and makes later ones fail with ErrClosed.
func (p *Publisher) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.inFlight.Wait()
	return nil
}

// createStream creates stream if it does not exist and waits until it is ACTIVE.
func createStream(ctx context.Context, c StreamCreator, stream string, shards int32) error {
	_, err := c.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String(stream), ShardCount: aws.Int32(shards)})
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return fmt.Errorf("kinesis: creating stream %s: %w", stream, err)
	}
	for attempt := 1; ; attempt++ {
		out, err := c.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(stream)})
		if err != nil {
			return fmt.Errorf("kinesis: describing stream %s: %w", stream, err)
		}
		if out.StreamDescriptionSummary != nil && out.StreamDescriptionSummary.StreamStatus == types.StreamStatusActive {
			return nil
		}
		if err := sleepCtx(ctx, backoff(100*time.Millisecond, 2*time.Second, attempt)); err != nil {
			return err
		}
	}
}

// retryableKinesisError is true for throttling and transient service errors.
func retryableKinesisError(err error) bool {
	var pte *types.ProvisionedThroughputExceededException
	var kte *types.KMSThrottlingException
	var lee *types.LimitExceededException
	var ife *types.InternalFailureException
	if errors.As(err, &pte) || errors.As(err, &kte) || errors.As(err, &lee) || errors.As(err, &ife) {
		return true
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "ThrottlingException", "Throttling", "ServiceUnavailable", "InternalFailure", "InternalServerError":
			return true
		}
	}
	return false
}

func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return err.Error()
}

// backoff is exponential with full jitter: a random wait in [d/2, d], d = base·2^(attempt-1) ≤ max.
func backoff(base, max time.Duration, attempt int) time.Duration {
	d := base
	for i := 1; i < attempt && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1) // #nosec G404 -- retry jitter, not a secret
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
