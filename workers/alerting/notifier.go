package alerting

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sns/types"
)

// SNSAPI is the part of the SNS client the notifier uses.
type SNSAPI interface {
	PublishBatch(ctx context.Context, in *sns.PublishBatchInput, opts ...func(*sns.Options)) (*sns.PublishBatchOutput, error)
}

// maxBatch is SNS PublishBatch's limit.
const maxBatch = 10

// SNSNotifier sends notifications to the alerts topic, up to ten per PublishBatch call.
type SNSNotifier struct {
	client   SNSAPI
	topicARN string
}

// NewSNSNotifier returns a notifier for topicARN.
func NewSNSNotifier(client SNSAPI, topicARN string) (*SNSNotifier, error) {
	if client == nil || !strings.HasPrefix(topicARN, "arn:") {
		return nil, fmt.Errorf("alerting: SNS notifier needs a client and a topic ARN, got %q", topicARN)
	}
	return &SNSNotifier{client: client, topicARN: topicARN}, nil
}

// Notify sends ns. It returns one error per notification (nil for those sent), so the caller marks
// exactly the sent ones.
func (n *SNSNotifier) Notify(ctx context.Context, ns []Notification) []error {
	errs := make([]error, len(ns))
	for start := 0; start < len(ns); start += maxBatch {
		end := min(start+maxBatch, len(ns))
		in := &sns.PublishBatchInput{TopicArn: aws.String(n.topicARN)}
		for i := start; i < end; i++ {
			nt := ns[i]
			attr := func(v string) types.MessageAttributeValue {
				return types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
			}
			in.PublishBatchRequestEntries = append(in.PublishBatchRequestEntries, types.PublishBatchRequestEntry{
				Id:      aws.String("n" + strconv.Itoa(i)),
				Subject: aws.String(nt.Subject()),
				Message: aws.String(nt.Body()),
				MessageAttributes: map[string]types.MessageAttributeValue{
					"severity":  attr(nt.Policy.withDefaults().Severity),
					"thingName": attr(nt.State.ThingName),
					"policy":    attr(nt.Policy.Name),
					"status":    attr(string(nt.Kind)),
				},
			})
		}
		out, err := n.client.PublishBatch(ctx, in)
		if err != nil {
			for i := start; i < end; i++ {
				errs[i] = fmt.Errorf("publishing alert to %s: %w", n.topicARN, err)
			}
			continue
		}
		for _, f := range out.Failed {
			i, convErr := strconv.Atoi(strings.TrimPrefix(aws.ToString(f.Id), "n"))
			if convErr != nil || i < start || i >= end {
				continue
			}
			errs[i] = fmt.Errorf("publishing alert to %s: %s: %s", n.topicARN, aws.ToString(f.Code), aws.ToString(f.Message))
		}
		sent := map[string]bool{}
		for _, s := range out.Successful {
			sent[aws.ToString(s.Id)] = true
		}
		for i := start; i < end; i++ {
			if errs[i] == nil && !sent["n"+strconv.Itoa(i)] {
				errs[i] = errors.New("publishing alert: SNS reported neither success nor failure")
			}
		}
	}
	return errs
}
