package sqs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// Publisher sends watermill messages to SQS queues; the watermill topic is the queue name or URL.
//
// Messages of one Publish call go out in SendMessageBatch calls of up to 10 entries and
// MaxBatchBytes, in order; entries SQS fails are retried on their own. Metadata travels as String
// message attributes, the UUID as UUIDAttribute. For FIFO queues MessageGroupId comes from
// MetadataMessageGroupID (or DefaultMessageGroupID) and MessageDeduplicationId from
// MetadataDeduplicationID, else the UUID.
type Publisher struct {
	cfg  PublisherConfig
	urls *queueURLs

	mu       sync.Mutex
	closed   bool
	inFlight sync.WaitGroup
}

var _ message.Publisher = (*Publisher)(nil)

// NewPublisher checks cfg and returns a Publisher.
func NewPublisher(cfg PublisherConfig) (*Publisher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Publisher{cfg: cfg, urls: newQueueURLs(cfg.Client)}, nil
}

// Publish sends msgs to the queue named topic (or the queue URL topic); see PublishContext.
func (p *Publisher) Publish(topic string, msgs ...*message.Message) error {
	return p.PublishContext(context.Background(), topic, msgs...)
}

// PublishContext sends msgs to the queue named topic (or the queue URL topic). Every message is
// checked first: a message SQS would refuse fails the call with a *MessageError or
// *TooManyAttributesError before anything is sent. Batches are sent in order and the call stops at
// the first batch with entries that still fail after Retries, returning their *EntryError values;
// earlier batches were sent.
func (p *Publisher) PublishContext(ctx context.Context, topic string, msgs ...*message.Message) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrPublisherClosed
	}
	p.inFlight.Add(1)
	p.mu.Unlock()
	defer p.inFlight.Done()

	if len(msgs) == 0 {
		return nil
	}
	url, err := p.urls.resolve(ctx, topic)
	if err != nil {
		return err
	}
	fifo := isFIFO(url)
	entries := make([]sendEntry, len(msgs))
	for i, m := range msgs {
		if m == nil {
			return &MessageError{Field: fmt.Sprintf("message %d", i), Reason: "is nil"}
		}
		if entries[i], err = toEntry(m, fifo, p.cfg.DefaultMessageGroupID, p.cfg.MaxBatchBytes); err != nil {
			return err
		}
	}
	for len(entries) > 0 {
		n := batchLen(entries, p.cfg.MaxBatchBytes)
		if err := p.sendBatch(ctx, url, entries[:n]); err != nil {
			return fmt.Errorf("sqs: publishing to %s: %w", topic, err)
		}
		entries = entries[n:]
	}
	return nil
}

// batchLen is how many entries from the front fit in one SendMessageBatch.
func batchLen(entries []sendEntry, maxBytes int) int {
	size := 0
	for i, e := range entries {
		if i == maxBatchEntries || size+e.size > maxBytes {
			return i
		}
		size += e.size
	}
	return len(entries)
}

// sendBatch sends entries, then again only those that failed and are worth retrying.
func (p *Publisher) sendBatch(ctx context.Context, url string, entries []sendEntry) error {
	wait := p.cfg.RetryBackoff
	req := make([]types.SendMessageBatchRequestEntry, 0, len(entries))
	var failed []error // entries refused for good; the others are still retried
	for attempt := 0; ; attempt++ {
		req = req[:0]
		for i := range entries {
			e := entries[i].entry
			e.Id = aws.String(strconv.Itoa(i))
			req = append(req, e)
		}
		cctx, cancel := context.WithTimeout(ctx, p.cfg.CallTimeout)
		out, err := p.cfg.Client.SendMessageBatch(cctx, &sqs.SendMessageBatchInput{QueueUrl: &url, Entries: req})
		cancel()
		var retry []sendEntry
		if err != nil {
			if ctx.Err() != nil || attempt >= p.cfg.Retries {
				return errors.Join(append(failed, fmt.Errorf("SendMessageBatch of %d messages: %w", len(entries), err))...)
			}
			retry = entries
		} else {
			for _, f := range out.Failed {
				i, convErr := strconv.Atoi(aws.ToString(f.Id))
				if convErr != nil || i < 0 || i >= len(entries) {
					failed = append(failed, fmt.Errorf("SendMessageBatch returned a failure for unknown entry id %q", aws.ToString(f.Id)))
					continue
				}
				if f.SenderFault || attempt >= p.cfg.Retries {
					failed = append(failed, &EntryError{Operation: "SendMessageBatch", ID: entries[i].uuid,
						Code: aws.ToString(f.Code), Message: aws.ToString(f.Message), SenderFault: f.SenderFault})
					continue
				}
				retry = append(retry, entries[i])
			}
		}
		if len(retry) == 0 {
			return errors.Join(failed...)
		}
		p.cfg.Logger.Warn("sqs: retrying failed SendMessageBatch entries", "queue", url,
			"entries", len(retry), "attempt", attempt+1, "error", err)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return errors.Join(append(failed, fmt.Errorf("SendMessageBatch retry of %d messages: %w", len(retry), ctx.Err()))...)
		}
		wait = min(2*wait, 5*time.Second)
		entries = retry
	}
}

// Close makes further Publish calls fail and waits for those in progress. It is safe to call more
// than once.
func (p *Publisher) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.inFlight.Wait()
	return nil
}
