package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/thingpipe/thingpipe/events"
	"github.com/thingpipe/thingpipe/simulator"
)

// The bench reads outcomes back through its own AWS clients, built from a configuration that is not
// instrumented, so its reads are not counted as thingpipe's API calls.

// eventsQueue is subscribed to the outcome topic so the bench can see every device.activated.
const eventsQueue = "thingpipe-bench-events"

// mailbox drains SQS queues subscribed to SNS topics (the alert inbox, the events queue) and tallies
// what arrived: FIRING emails by incident, device.activated events by thing. Draining as it goes
// keeps the queues short, since the emulator's SQS slows down as a queue deepens.
type mailbox struct {
	client         *sqs.Client
	inboxURL       string
	eventsURL      string
	mu             sync.Mutex
	firing         map[string]int // incident id (or subject when none) → FIRING emails
	resolved       int
	activated      map[string]int // thing → device.activated events
	activatedIDs   map[string]int // event id → copies
	otherEvents    map[string]int // event type → count
	unparsedEmails int
}

func newMailbox(ctx context.Context, cfg aws.Config, inboxURL, eventsTopicARN string) (*mailbox, error) {
	client := sqs.NewFromConfig(cfg)
	q, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(eventsQueue)})
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", eventsQueue, err)
	}
	attrs, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: q.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn},
	})
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", eventsQueue, err)
	}
	if _, err := sns.NewFromConfig(cfg).Subscribe(ctx, &sns.SubscribeInput{
		TopicArn: aws.String(eventsTopicARN), Protocol: aws.String("sqs"),
		Endpoint: aws.String(attrs.Attributes[string(sqstypes.QueueAttributeNameQueueArn)]),
	}); err != nil {
		return nil, fmt.Errorf("subscribing %s to %s: %w", eventsQueue, eventsTopicARN, err)
	}
	m := &mailbox{
		client: client, inboxURL: inboxURL, eventsURL: aws.ToString(q.QueueUrl),
		firing: map[string]int{}, activated: map[string]int{}, activatedIDs: map[string]int{}, otherEvents: map[string]int{},
	}
	// What an earlier run against the same endpoint left behind is not this run's.
	for _, u := range []string{m.inboxURL, m.eventsURL} {
		if _, err := client.PurgeQueue(ctx, &sqs.PurgeQueueInput{QueueUrl: aws.String(u)}); err != nil {
			return nil, fmt.Errorf("purging %s: %w", u, err)
		}
	}
	return m, nil
}

// snsEnvelope is an SNS notification as delivered to SQS (raw delivery off).
type snsEnvelope struct {
	Subject           string
	Message           string
	MessageAttributes map[string]struct{ Value string }
}

// drain reads both queues until they are empty, deleting what it read.
func (m *mailbox) drain(ctx context.Context) error {
	for _, q := range []struct {
		url    string
		handle func(snsEnvelope)
	}{{m.inboxURL, m.email}, {m.eventsURL, m.event}} {
		for {
			out, err := m.client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
				QueueUrl: aws.String(q.url), MaxNumberOfMessages: 10, VisibilityTimeout: 60,
			})
			if err != nil {
				return fmt.Errorf("reading %s: %w", q.url, err)
			}
			if len(out.Messages) == 0 {
				break
			}
			var del []sqstypes.DeleteMessageBatchRequestEntry
			for i, msg := range out.Messages {
				var env snsEnvelope
				if err := json.Unmarshal([]byte(aws.ToString(msg.Body)), &env); err != nil {
					env = snsEnvelope{Message: aws.ToString(msg.Body)}
				}
				q.handle(env)
				del = append(del, sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(i)), ReceiptHandle: msg.ReceiptHandle})
			}
			if _, err := m.client.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(q.url), Entries: del}); err != nil {
				return fmt.Errorf("deleting from %s: %w", q.url, err)
			}
		}
	}
	return nil
}

func (m *mailbox) email(env snsEnvelope) {
	status := env.MessageAttributes["status"].Value
	if status == "" { // no attributes: tell by the subject
		status = "FIRING"
		if strings.HasPrefix(env.Subject, "[RESOLVED]") {
			status = "RESOLVED"
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if status != "FIRING" {
		m.resolved++
		return
	}
	incident := bodyField(env.Message, "Incident:")
	if incident == "" {
		m.unparsedEmails++
		incident = env.Subject
	}
	m.firing[incident]++
}

// bodyField returns the value of a "  Label:  value" row of an alert email body.
func bodyField(body, label string) string {
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), label); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func (m *mailbox) event(env snsEnvelope) {
	var ev events.Envelope
	if err := json.Unmarshal([]byte(env.Message), &ev); err != nil {
		m.mu.Lock()
		m.otherEvents["unparsed"]++
		m.mu.Unlock()
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if ev.Type != events.TypeDeviceActivated {
		m.otherEvents[ev.Type]++
		return
	}
	m.activated[ev.ThingName]++
	m.activatedIDs[ev.ID]++
}

// mailTally is what the mailbox saw.
type mailTally struct {
	FiringEmails, Incidents, DuplicateFiring, ResolvedEmails int
	Activated, ActivatedThings, DuplicateActivated           int
	OtherEvents                                              map[string]int
}

func (m *mailbox) tally() mailTally {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := mailTally{ResolvedEmails: m.resolved, Incidents: len(m.firing), ActivatedThings: len(m.activated), OtherEvents: map[string]int{}}
	for _, n := range m.firing {
		t.FiringEmails += n
		t.DuplicateFiring += n - 1
	}
	for _, n := range m.activated {
		t.Activated += n
		t.DuplicateActivated += n - 1
	}
	for k, v := range m.otherEvents {
		t.OtherEvents[k] = v
	}
	return t
}

// archiveTally is what the telemetry archive holds for the simulated fleet.
type archiveTally struct {
	Objects, Lines, Records, Duplicates int // Records: unique (thingName, ts)
	Foreign                             int // lines of things not in this fleet
}

// readArchive reads every archive object back and counts the fleet's records by (thingName, ts).
func readArchive(ctx context.Context, client *s3.Client, bucket string, fleet map[string]bool) (archiveTally, error) {
	var t archiveTally
	seen := map[string]int{}
	p := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String("telemetry/")})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return t, fmt.Errorf("listing s3://%s/telemetry/: %w", bucket, err)
		}
		for _, obj := range page.Contents {
			t.Objects++
			lines, err := readObjectLines(ctx, client, bucket, aws.ToString(obj.Key))
			if err != nil {
				return t, err
			}
			for _, l := range lines {
				var rec struct {
					ThingName string `json:"thingName"`
					TS        int64  `json:"ts"`
				}
				if err := json.Unmarshal(l, &rec); err != nil {
					return t, fmt.Errorf("s3://%s/%s: line is not JSON: %w", bucket, aws.ToString(obj.Key), err)
				}
				if !fleet[rec.ThingName] {
					t.Foreign++
					continue
				}
				t.Lines++
				seen[fmt.Sprintf("%s\x00%d", rec.ThingName, rec.TS)]++
			}
		}
	}
	t.Records = len(seen)
	t.Duplicates = t.Lines - t.Records
	return t, nil
}

func readObjectLines(ctx context.Context, client *s3.Client, bucket, key string) ([][]byte, error) {
	got, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return nil, fmt.Errorf("reading s3://%s/%s: %w", bucket, key, err)
	}
	defer got.Body.Close()
	zr, err := gzip.NewReader(got.Body)
	if err != nil {
		return nil, fmt.Errorf("s3://%s/%s is not gzip: %w", bucket, key, err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("reading s3://%s/%s: %w", bucket, key, err)
	}
	var lines [][]byte
	for l := range bytes.SplitSeq(bytes.TrimSpace(data), []byte("\n")) {
		if len(l) > 0 {
			lines = append(lines, l)
		}
	}
	return lines, nil
}

// fleetTally is what DynamoDB holds for the simulated fleet.
type fleetTally struct {
	Active, Bindings, WrongUser int
}

// readFleet reads each simulated device's item and binding back.
func readFleet(ctx context.Context, client *dynamodb.Client, devicesTable, bindingsTable string, devices []simulator.Device) (fleetTally, error) {
	var t fleetTally
	get := func(table, thing string) (map[string]ddbtypes.AttributeValue, error) {
		out, err := client.GetItem(ctx, &dynamodb.GetItemInput{
			TableName: aws.String(table), ConsistentRead: aws.Bool(true),
			Key: map[string]ddbtypes.AttributeValue{"thingName": &ddbtypes.AttributeValueMemberS{Value: thing}},
		})
		if err != nil {
			return nil, fmt.Errorf("reading %s from %s: %w", thing, table, err)
		}
		return out.Item, nil
	}
	for _, d := range devices {
		item, err := get(devicesTable, d.Name)
		if err != nil {
			return t, err
		}
		if itemString(item, "state") == "ACTIVE" {
			t.Active++
		}
		if d.BindUser == "" {
			continue
		}
		item, err = get(bindingsTable, d.Name)
		if err != nil {
			return t, err
		}
		switch u := itemString(item, "userId"); u {
		case d.BindUser:
			t.Bindings++
		case "":
		default:
			t.WrongUser++
		}
	}
	return t, nil
}

func itemString(item map[string]ddbtypes.AttributeValue, name string) string {
	if v, ok := item[name].(*ddbtypes.AttributeValueMemberS); ok {
		return v.Value
	}
	return ""
}
