package sqs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

type urlGetter interface {
	GetQueueUrl(ctx context.Context, in *sqs.GetQueueUrlInput, optFns ...func(*sqs.Options)) (*sqs.GetQueueUrlOutput, error)
}

// queueURLs resolves watermill topics (queue names, or full queue URLs) to queue URLs, once each.
type queueURLs struct {
	client urlGetter
	mu     sync.RWMutex
	urls   map[string]string
}

func newQueueURLs(client urlGetter) *queueURLs {
	return &queueURLs{client: client, urls: make(map[string]string)}
}

func isURL(topic string) bool {
	return strings.HasPrefix(topic, "https://") || strings.HasPrefix(topic, "http://")
}

// isFIFO reports a FIFO queue by its name, which SQS requires to end in ".fifo".
func isFIFO(queueURL string) bool { return strings.HasSuffix(queueURL, ".fifo") }

func (q *queueURLs) resolve(ctx context.Context, topic string) (string, error) {
	if topic == "" {
		return "", errors.New("sqs: topic (queue name or URL) is empty")
	}
	if isURL(topic) {
		return topic, nil
	}
	q.mu.RLock()
	u, ok := q.urls[topic]
	q.mu.RUnlock()
	if ok {
		return u, nil
	}
	out, err := q.client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(topic)})
	if err != nil {
		return "", fmt.Errorf("sqs: resolving queue %q: %w", topic, err)
	}
	u = aws.ToString(out.QueueUrl)
	q.set(topic, u)
	return u, nil
}

func (q *queueURLs) set(topic, url string) {
	q.mu.Lock()
	q.urls[topic] = url
	q.mu.Unlock()
}
