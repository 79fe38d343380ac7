package sqs

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// handleEntry is one receipt handle waiting for a delete or a visibility change.
type handleEntry struct {
	id         string // SQS MessageId, for logs
	handle     string
	visibility int32     // seconds; visibility changes only
	beat       *received // set for heartbeat extensions
}

// entryFailure is an entry SQS refused.
type entryFailure struct {
	entry       handleEntry
	code, msg   string
	senderFault bool
}

// batchCall makes one batch call of at most 10 entries and returns the entries that failed.
type batchCall func(ctx context.Context, entries []handleEntry) ([]entryFailure, error)

// maxConcurrentFlushes bounds batch calls in the air per batcher: enough to keep up with many
// acks while one call is slow, few enough not to flood SQS.
const maxConcurrentFlushes = 4

// batcher gathers entries into batch calls of up to 10, sent when full or when the oldest entry has
// waited interval. Failed entries are retried on their own, with backoff, a bounded number of times;
// what still fails is logged, entry by entry.
type batcher struct {
	op          string
	queueURL    string
	call        batchCall
	interval    time.Duration
	retries     int
	backoff     time.Duration
	callTimeout time.Duration
	logger      *slog.Logger
	// benign says a failure is expected and only worth a debug log (a heartbeat racing an ack).
	benign func(entryFailure) bool

	in      chan handleEntry
	sem     chan struct{}
	flushes sync.WaitGroup
	done    chan struct{}
}

func newBatcher(op, queueURL string, call batchCall, benign func(entryFailure) bool, cfg SubscriberConfig) *batcher {
	b := &batcher{
		op: op, queueURL: queueURL, call: call, benign: benign,
		interval: cfg.DeleteBatchInterval, retries: cfg.BatchRetries, backoff: cfg.RetryBackoff,
		callTimeout: cfg.CallTimeout, logger: cfg.Logger,
		in:   make(chan handleEntry, 4*maxBatchEntries),
		sem:  make(chan struct{}, maxConcurrentFlushes),
		done: make(chan struct{}),
	}
	go b.loop()
	return b
}

// add queues an entry. It must not be called after close.
func (b *batcher) add(e handleEntry) { b.in <- e }

// close sends what is pending and waits for every call, retries included.
func (b *batcher) close() {
	close(b.in)
	<-b.done
}

func (b *batcher) loop() {
	defer close(b.done)
	pending := make([]handleEntry, 0, maxBatchEntries)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	flush := func() {
		timer.Stop()
		if len(pending) == 0 {
			return
		}
		batch := pending
		pending = make([]handleEntry, 0, maxBatchEntries)
		b.sem <- struct{}{}
		b.flushes.Add(1)
		go func() {
			defer func() { <-b.sem; b.flushes.Done() }()
			b.send(batch)
		}()
	}
	for {
		select {
		case e, ok := <-b.in:
			if !ok {
				flush()
				b.flushes.Wait()
				return
			}
			pending = append(pending, e)
			if len(pending) == maxBatchEntries {
				flush()
			} else if len(pending) == 1 {
				timer.Reset(b.interval)
			}
		case <-timer.C:
			flush()
		}
	}
}

func (b *batcher) send(entries []handleEntry) {
	wait := b.backoff
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), b.callTimeout)
		failed, err := b.call(ctx, entries)
		cancel()
		if err != nil {
			failed = failed[:0]
			for _, e := range entries {
				failed = append(failed, entryFailure{entry: e, code: "CallFailed", msg: err.Error()})
			}
		}
		var retry []handleEntry
		for _, f := range failed {
			if b.benign != nil && b.benign(f) {
				b.logger.Debug("sqs: batch entry failed after its message was settled", "operation", b.op,
					"queue", b.queueURL, "message_id", f.entry.id, "code", f.code)
				continue
			}
			if !f.senderFault && attempt < b.retries {
				retry = append(retry, f.entry)
				continue
			}
			b.logger.Error("sqs: batch entry failed for good", "operation", b.op, "queue", b.queueURL,
				"message_id", f.entry.id, "code", f.code, "sender_fault", f.senderFault, "attempts", attempt+1,
				"error", &EntryError{Operation: b.op, ID: f.entry.id, Code: f.code, Message: f.msg, SenderFault: f.senderFault})
		}
		if len(retry) == 0 {
			return
		}
		b.logger.Warn("sqs: retrying failed batch entries", "operation", b.op, "queue", b.queueURL,
			"entries", len(retry), "attempt", attempt+1)
		time.Sleep(wait)
		wait = min(2*wait, 5*time.Second)
		entries = retry
	}
}

// failures maps a batch result's failed entries back to what was sent, by index id.
func failures(sent []handleEntry, failed []types.BatchResultErrorEntry) []entryFailure {
	out := make([]entryFailure, 0, len(failed))
	for _, f := range failed {
		i, err := strconv.Atoi(aws.ToString(f.Id))
		if err != nil || i < 0 || i >= len(sent) {
			continue // not an id we sent; nothing to retry
		}
		out = append(out, entryFailure{entry: sent[i], code: aws.ToString(f.Code), msg: aws.ToString(f.Message), senderFault: f.SenderFault})
	}
	return out
}

// entryID is the id of a batch entry: its index, so a failure maps back without a lookup.
func entryID(i int) *string { return aws.String(strconv.Itoa(i)) }

func deleteCall(client SubscriberAPI, queueURL string) batchCall {
	return func(ctx context.Context, entries []handleEntry) ([]entryFailure, error) {
		req := make([]types.DeleteMessageBatchRequestEntry, len(entries))
		for i := range entries {
			req[i] = types.DeleteMessageBatchRequestEntry{Id: entryID(i), ReceiptHandle: &entries[i].handle}
		}
		out, err := client.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: &queueURL, Entries: req})
		if err != nil {
			return nil, err
		}
		return failures(entries, out.Failed), nil
	}
}

func visibilityCall(client SubscriberAPI, queueURL string) batchCall {
	return func(ctx context.Context, entries []handleEntry) ([]entryFailure, error) {
		req := make([]types.ChangeMessageVisibilityBatchRequestEntry, len(entries))
		for i := range entries {
			req[i] = types.ChangeMessageVisibilityBatchRequestEntry{Id: entryID(i), ReceiptHandle: &entries[i].handle, VisibilityTimeout: entries[i].visibility}
		}
		out, err := client.ChangeMessageVisibilityBatch(ctx, &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: &queueURL, Entries: req})
		if err != nil {
			return nil, err
		}
		return failures(entries, out.Failed), nil
	}
}
