package sqs

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/google/go-cmp/cmp"
)

func TestSubscriberConfigValidate(t *testing.T) {
	client := &sqs.Client{}
	for _, tc := range []struct {
		name   string
		cfg    SubscriberConfig
		fields []string // fields named by the errors, in order
	}{
		{name: "defaults", cfg: SubscriberConfig{Client: client}},
		{name: "no client", cfg: SubscriberConfig{}, fields: []string{"Client"}},
		{name: "negative counts", cfg: SubscriberConfig{Client: client, Receivers: -1, MaxInFlight: -2, BatchRetries: -1},
			fields: []string{"Receivers", "MaxInFlight", "BatchRetries"}},
		{name: "visibility not whole seconds", cfg: SubscriberConfig{Client: client, VisibilityTimeout: 1500 * time.Millisecond, HeartbeatInterval: 100 * time.Millisecond},
			fields: []string{"VisibilityTimeout"}},
		{name: "visibility above 12h", cfg: SubscriberConfig{Client: client, VisibilityTimeout: 13 * time.Hour}, fields: []string{"VisibilityTimeout"}},
		{name: "wait above 20s", cfg: SubscriberConfig{Client: client, WaitTime: 21 * time.Second}, fields: []string{"WaitTime"}},
		{name: "negative wait means short polling", cfg: SubscriberConfig{Client: client, WaitTime: -1}},
		{name: "backoff max below initial", cfg: SubscriberConfig{Client: client, NackBackoffInitial: 10 * time.Second, NackBackoffMax: 5 * time.Second},
			fields: []string{"NackBackoffMax"}},
		{name: "heartbeat too slow for visibility", cfg: SubscriberConfig{Client: client, VisibilityTimeout: 10 * time.Second, HeartbeatInterval: 5 * time.Second},
			fields: []string{"HeartbeatInterval"}},
		{name: "negative durations", cfg: SubscriberConfig{Client: client, DeleteBatchInterval: -1, CloseTimeout: -1, CallTimeout: -1, RetryBackoff: -1},
			fields: []string{"DeleteBatchInterval", "CloseTimeout", "CallTimeout", "RetryBackoff"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.fields, configFields(tc.cfg.Validate())); diff != "" {
				t.Errorf("fields named (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPublisherConfigValidate(t *testing.T) {
	client := &sqs.Client{}
	for _, tc := range []struct {
		name   string
		cfg    PublisherConfig
		fields []string
	}{
		{name: "defaults", cfg: PublisherConfig{Client: client}},
		{name: "no client", cfg: PublisherConfig{}, fields: []string{"Client"}},
		{name: "bad default group", cfg: PublisherConfig{Client: client, DefaultMessageGroupID: "a b"}, fields: []string{"DefaultMessageGroupID"}},
		{name: "batch bytes out of range", cfg: PublisherConfig{Client: client, MaxBatchBytes: 2 << 20}, fields: []string{"MaxBatchBytes"}},
		{name: "negative", cfg: PublisherConfig{Client: client, Retries: -1, RetryBackoff: -1, CallTimeout: -1},
			fields: []string{"Retries", "RetryBackoff", "CallTimeout"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.fields, configFields(tc.cfg.Validate())); diff != "" {
				t.Errorf("fields named (-want +got):\n%s", diff)
			}
		})
	}
}

func configFields(err error) []string {
	if err == nil {
		return nil
	}
	var fields []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var ce *ConfigError
		if !errors.As(e, &ce) {
			return []string{"not a *ConfigError: " + e.Error()}
		}
		fields = append(fields, ce.Field)
	}
	return fields
}

func TestNackBackoff(t *testing.T) {
	for _, tc := range []struct {
		initial, max time.Duration
		count        int
		want         int32
	}{
		{time.Second, time.Minute, 1, 1},
		{time.Second, time.Minute, 2, 2},
		{time.Second, time.Minute, 3, 4},
		{time.Second, time.Minute, 7, 60},
		{time.Second, time.Minute, 1000, 60},             // no overflow
		{time.Second, time.Minute, 0, 1},                 // missing receive count
		{500 * time.Millisecond, 10 * time.Second, 1, 1}, // rounded up to whole seconds
		{0, 0, 5, 0}, // immediate redelivery
		{3 * time.Second, 5 * time.Second, 2, 5},
	} {
		if got := nackBackoff(tc.initial, tc.max, tc.count); got != tc.want {
			t.Errorf("nackBackoff(%s, %s, %d) = %d, want %d", tc.initial, tc.max, tc.count, got, tc.want)
		}
	}
}

func TestBatchLen(t *testing.T) {
	sizes := func(s ...int) []sendEntry {
		out := make([]sendEntry, len(s))
		for i, n := range s {
			out[i].size = n
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		entries []sendEntry
		max     int
		want    int
	}{
		{"ten of many", sizes(1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1), 100, 10},
		{"fewer than ten", sizes(1, 2, 3), 100, 3},
		{"bytes limit", sizes(40, 40, 40), 100, 2},
		{"exactly at the limit", sizes(50, 50, 1), 100, 2},
		{"one big", sizes(100, 1), 100, 1},
	} {
		if got := batchLen(tc.entries, tc.max); got != tc.want {
			t.Errorf("%s: batchLen = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestGroupInOrder(t *testing.T) {
	var batch []*received
	for _, g := range []string{"a", "b", "a", "c", "b", "a"} {
		batch = append(batch, &received{group: g, id: g + string(rune('0'+len(batch)))})
	}
	var got [][]string
	for _, g := range groupInOrder(batch) {
		var ids []string
		for _, r := range g {
			ids = append(ids, r.id)
		}
		got = append(got, ids)
	}
	want := [][]string{{"a0", "a2", "a5"}, {"b1", "b4"}, {"c3"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("groups (-want +got):\n%s", diff)
	}
}

func TestCheckText(t *testing.T) {
	for _, tc := range []struct {
		in     string
		wantOK bool
	}{
		{`{"a":1}`, true},
		{"tab\tnewline\ncr\r", true},
		{"ü ✓ 😀 \uFFFD", true},
		{"", false},
		{"a\x00", false},
		{"\x1f", false},
		{"\xff", false},
		{"\uFFFE", false},
		{"\xed\xa0\x80", false}, // an encoded surrogate is not valid UTF-8
	} {
		if got := checkText(tc.in) == ""; got != tc.wantOK {
			t.Errorf("checkText(%q) ok = %t, want %t (%s)", tc.in, got, tc.wantOK, checkText(tc.in))
		}
	}
}

func TestCheckAttributeName(t *testing.T) {
	for _, tc := range []struct {
		in     string
		wantOK bool
	}{
		{"thingName", true}, {"sqs.dlq_reason", true}, {"a-b_c.d", true},
		{"", false}, {".a", false}, {"a.", false}, {"a..b", false}, {"aws.x", false}, {"Amazon.x", false},
		{"a b", false}, {"ü", false}, {strings.Repeat("a", 257), false},
	} {
		if got := checkAttributeName(tc.in) == ""; got != tc.wantOK {
			t.Errorf("checkAttributeName(%q) ok = %t, want %t", tc.in, got, tc.wantOK)
		}
	}
}

// fromSQS must cope with whatever a queue holds: no attributes, binary attributes, odd counts.
func TestFromSQS(t *testing.T) {
	r := fromSQS(context.Background(), types.Message{
		MessageId: aws.String("m-1"), ReceiptHandle: aws.String("h"), Body: aws.String("b"),
		Attributes: map[string]string{"ApproximateReceiveCount": "x", "MessageGroupId": "g"},
		MessageAttributes: map[string]types.MessageAttributeValue{
			"bin": {DataType: aws.String("Binary"), BinaryValue: []byte{1}},
			"n":   {DataType: aws.String("Number"), StringValue: aws.String("42")},
		},
	})
	want := message.Metadata{MetadataMessageID: "m-1", MetadataReceiveCount: "x", MetadataMessageGroupID: "g", "n": "42"}
	if diff := cmp.Diff(want, r.msg.Metadata); diff != "" {
		t.Errorf("metadata (-want +got):\n%s", diff)
	}
	if r.msg.UUID != "m-1" || r.receiveCount != 1 || r.group != "g" || r.handle != "h" {
		t.Errorf("got uuid %q count %d group %q handle %q", r.msg.UUID, r.receiveCount, r.group, r.handle)
	}
}

// FuzzToEntry: any payload and metadata gives an entry or a typed error, never a panic, and an
// entry always passes SQS's rules.
func FuzzToEntry(f *testing.F) {
	f.Add([]byte(`{"a":1}`), "key", "value", "group", true)
	f.Add([]byte{0xff}, "", "", "", false)
	f.Add([]byte("x"), "AWS.x", "\x00", "a b", true)
	f.Fuzz(func(t *testing.T, payload []byte, key, value, group string, fifo bool) {
		m := message.NewMessage("uuid-1", payload)
		m.Metadata.Set(key, value)
		m.Metadata.Set(MetadataMessageGroupID, group)
		e, err := toEntry(m, fifo, "", defaultBatchBytes)
		if err != nil {
			var me *MessageError
			var tm *TooManyAttributesError
			if !errors.As(err, &me) && !errors.As(err, &tm) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if checkText(aws.ToString(e.entry.MessageBody)) != "" || len(e.entry.MessageAttributes) > MaxAttributes {
			t.Fatalf("entry SQS would refuse: %+v", e.entry)
		}
		for k, v := range e.entry.MessageAttributes {
			if checkAttributeName(k) != "" || checkText(aws.ToString(v.StringValue)) != "" {
				t.Fatalf("attribute %q=%q SQS would refuse", k, aws.ToString(v.StringValue))
			}
		}
		if fifo && (checkFIFOID(aws.ToString(e.entry.MessageGroupId)) != "" || checkFIFOID(aws.ToString(e.entry.MessageDeduplicationId)) != "") {
			t.Fatalf("fifo ids SQS would refuse: %+v", e.entry)
		}
	})
}
