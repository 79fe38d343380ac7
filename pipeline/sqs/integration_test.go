package sqs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/google/go-cmp/cmp"
)

func newPair(t *testing.T, client testClientAPI, subCfg SubscriberConfig, pubCfg PublisherConfig) (*Publisher, *Subscriber) {
	t.Helper()
	subCfg.Client = client
	sub, err := NewSubscriber(subCfg)
	if err != nil {
		t.Fatal(err)
	}
	pubCfg.Client = client
	if pubCfg.Logger == nil {
		pubCfg.Logger = quietLogger()
	}
	pub, err := NewPublisher(pubCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Close(); _ = sub.Close() })
	return pub, sub
}

func TestRoundTripKeepsUUIDAndMetadata(t *testing.T) {
	client := testClient(t)
	for _, tc := range []struct {
		name      string
		byURL     bool
		fifo      bool
		metadata  map[string]string
		wantGroup string
		wantDedup string
	}{
		{name: "standard by name", metadata: map[string]string{"thingName": "dev-42", "reason": "bad json"}},
		{name: "standard by URL", byURL: true, metadata: map[string]string{"a": "1"}},
		{name: "fifo group from metadata", fifo: true,
			metadata:  map[string]string{MetadataMessageGroupID: "dev-7", "k": "v"},
			wantGroup: "dev-7"},
		{name: "fifo explicit dedup id by URL", byURL: true, fifo: true,
			metadata:  map[string]string{MetadataMessageGroupID: "g", MetadataDeduplicationID: "req-1"},
			wantGroup: "g", wantDedup: "req-1"},
		{name: "received message republished: sqs keys are not attributes",
			metadata: map[string]string{MetadataMessageID: "old", MetadataReceiveCount: "7", MetadataSentTimestamp: "1", "x": "y"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topic, url := createQueue(t, client, "roundtrip", tc.fifo)
			if tc.byURL {
				topic = url
			}
			pub, sub := newPair(t, client, fastConfig(nil), PublisherConfig{})
			msgs, err := sub.Subscribe(context.Background(), topic)
			if err != nil {
				t.Fatal(err)
			}
			sent := message.NewMessage(watermill.NewUUID(), []byte(`{"temperature":21.5,"note":"ü ✓"}`))
			for k, v := range tc.metadata {
				sent.Metadata.Set(k, v)
			}
			before := time.Now().Add(-time.Second).UnixMilli()
			if err := pub.Publish(topic, sent); err != nil {
				t.Fatal(err)
			}
			got := next(t, msgs, 10*time.Second)
			got.Ack()
			if got.UUID != sent.UUID {
				t.Errorf("UUID %q, want %q", got.UUID, sent.UUID)
			}
			if string(got.Payload) != string(sent.Payload) {
				t.Errorf("payload %q, want %q", got.Payload, sent.Payload)
			}
			want := map[string]string{}
			for k, v := range tc.metadata {
				if !isReserved(k) {
					want[k] = v
				}
			}
			if tc.fifo {
				want[MetadataMessageGroupID] = tc.wantGroup
				want[MetadataDeduplicationID] = tc.wantDedup
				if tc.wantDedup == "" {
					want[MetadataDeduplicationID] = sent.UUID // the UUID is the default dedup id
				}
			}
			want[MetadataReceiveCount] = "1"
			gotMD := map[string]string(got.Metadata)
			if gotMD[MetadataMessageID] == "" || gotMD[MetadataMessageID] == "old" {
				t.Errorf("%s = %q, want the SQS MessageId", MetadataMessageID, gotMD[MetadataMessageID])
			}
			sentAt, err := strconv.ParseInt(gotMD[MetadataSentTimestamp], 10, 64)
			if err != nil || sentAt < before || sentAt > time.Now().Add(time.Second).UnixMilli() {
				t.Errorf("%s = %q, want epoch ms around now", MetadataSentTimestamp, gotMD[MetadataSentTimestamp])
			}
			want[MetadataMessageID] = gotMD[MetadataMessageID]
			want[MetadataSentTimestamp] = gotMD[MetadataSentTimestamp]
			if diff := cmp.Diff(want, gotMD); diff != "" {
				t.Errorf("metadata (-want +got):\n%s", diff)
			}
		})
	}
}

// AWS IoT's SQS rule action sends the payload as the body and nothing else.
func TestRawMessageWithoutAttributes(t *testing.T) {
	client := testClient(t)
	name, url := createQueue(t, client, "raw", false)
	body := `{"eventType":"CREATED","thingName":"dev-1","attributes":{"mac":"aa:bb"}}`
	sent, err := client.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String(body)})
	if err != nil {
		t.Fatal(err)
	}
	_, sub := newPair(t, client, fastConfig(nil), PublisherConfig{})
	msgs, err := sub.Subscribe(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	got := next(t, msgs, 10*time.Second)
	got.Ack()
	if got.UUID != aws.ToString(sent.MessageId) {
		t.Errorf("UUID %q, want the SQS MessageId %q", got.UUID, aws.ToString(sent.MessageId))
	}
	if string(got.Payload) != body {
		t.Errorf("payload %q, want %q", got.Payload, body)
	}
	var keys []string
	for k := range got.Metadata {
		keys = append(keys, k)
	}
	if diff := cmp.Diff([]string{MetadataMessageID, MetadataReceiveCount, MetadataSentTimestamp}, keys, sortStrings); diff != "" {
		t.Errorf("metadata keys (-want +got):\n%s", diff)
	}
}

var sortStrings = cmp.Transformer("sort", func(in []string) []string {
	out := append([]string(nil), in...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
})

func TestPublishRejectsWhatSQSWouldRefuse(t *testing.T) {
	client := testClient(t)
	stdName, stdURL := createQueue(t, client, "refuse", false)
	fifoName, _ := createQueue(t, client, "refuse", true)
	withMetadata := func(n int, extra map[string]string) *message.Message {
		m := message.NewMessage(watermill.NewUUID(), []byte("x"))
		for i := range n {
			m.Metadata.Set(fmt.Sprintf("k%d", i), "v")
		}
		for k, v := range extra {
			m.Metadata.Set(k, v)
		}
		return m
	}
	for _, tc := range []struct {
		name      string
		topic     string
		msg       *message.Message
		wantField string // MessageError field; "" for success
		wantAttrs int    // TooManyAttributesError.Attributes; 0 if not that error
	}{
		{name: "9 metadata entries fit (plus the UUID)", topic: stdName, msg: withMetadata(9, nil)},
		{name: "10 metadata entries are too many", topic: stdName, msg: withMetadata(10, nil), wantAttrs: 11},
		{name: "sqs keys and empty values do not count", topic: stdName, msg: withMetadata(9, map[string]string{
			MetadataMessageID: "m", MetadataReceiveCount: "3", MetadataSentTimestamp: "1", "empty": ""})},
		{name: "bad attribute name", topic: stdName, msg: withMetadata(0, map[string]string{"thing name": "x"}), wantField: `metadata key "thing name"`},
		{name: "reserved AWS prefix", topic: stdName, msg: withMetadata(0, map[string]string{"AWS.trace": "x"}), wantField: `metadata key "AWS.trace"`},
		{name: "metadata value with a control character", topic: stdName, msg: withMetadata(0, map[string]string{"k": "a\x00b"}), wantField: `metadata value of "k"`},
		{name: "empty payload", topic: stdName, msg: message.NewMessage("u1", nil), wantField: "payload"},
		{name: "binary payload", topic: stdName, msg: message.NewMessage("u2", []byte{0xff, 0xfe}), wantField: "payload"},
		{name: "payload too big", topic: stdName, msg: message.NewMessage("u3", []byte(strings.Repeat("a", 256*1024))), wantField: "size"},
		{name: "fifo without group id", topic: fifoName, msg: withMetadata(0, nil), wantField: MetadataMessageGroupID},
		{name: "fifo group id with a space", topic: fifoName, msg: withMetadata(0, map[string]string{MetadataMessageGroupID: "a b"}), wantField: MetadataMessageGroupID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pub, _ := newPair(t, client, fastConfig(nil), PublisherConfig{})
			ok := message.NewMessage(watermill.NewUUID(), []byte("fine"))
			ok.Metadata.Set(MetadataMessageGroupID, "g")
			// A good message first: a bad one in the same call means nothing at all is sent.
			err := pub.Publish(tc.topic, ok, tc.msg)
			var tooMany *TooManyAttributesError
			var bad *MessageError
			switch {
			case tc.wantAttrs > 0:
				if !errors.As(err, &tooMany) {
					t.Fatalf("error %v, want *TooManyAttributesError", err)
				}
				if tooMany.Attributes != tc.wantAttrs || tooMany.Max != MaxAttributes || tooMany.UUID != tc.msg.UUID {
					t.Errorf("got %+v, want %d attributes of max %d for %s", *tooMany, tc.wantAttrs, MaxAttributes, tc.msg.UUID)
				}
			case tc.wantField != "":
				if !errors.As(err, &bad) {
					t.Fatalf("error %v, want *MessageError", err)
				}
				if bad.Field != tc.wantField || bad.UUID != tc.msg.UUID {
					t.Errorf("got field %q of %s, want %q of %s (%v)", bad.Field, bad.UUID, tc.wantField, tc.msg.UUID, err)
				}
			default:
				if err != nil {
					t.Fatalf("Publish: %v", err)
				}
			}
			if tc.topic == stdName && err != nil {
				if visible, _ := queueCounts(t, client, stdURL); visible != "0" {
					t.Errorf("%s messages in the queue after a refused Publish, want 0", visible)
				}
			}
			drain(t, client, stdURL)
		})
	}
}

// drain deletes whatever a queue holds, so cases sharing it start empty.
func drain(t *testing.T, client *sqs.Client, url string) {
	t.Helper()
	for {
		out, err := client.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Messages) == 0 {
			return
		}
		for _, m := range out.Messages {
			if _, err := client.DeleteMessage(context.Background(), &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// A nack makes the message visible again after the backoff (1s, then 2s …), not after the
// visibility timeout (30s here).
func TestNackComesBackAfterBackoff(t *testing.T) {
	client := &faultyClient{Client: testClient(t)}
	name, _ := createQueue(t, client.Client, "nack", false)
	cfg := fastConfig(nil)
	cfg.VisibilityTimeout = 30 * time.Second
	cfg.HeartbeatInterval = 10 * time.Second
	cfg.NackBackoffInitial = time.Second
	cfg.NackBackoffMax = 4 * time.Second
	pub, sub := newPair(t, client, cfg, PublisherConfig{})
	if err := pub.Publish(name, message.NewMessage("poison", []byte("x"))); err != nil {
		t.Fatal(err)
	}
	msgs, err := sub.Subscribe(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	var handles []string
	last := time.Now()
	for want := 1; want <= 3; want++ {
		m := next(t, msgs, 10*time.Second) // well below the 30s visibility timeout
		if got := m.Metadata.Get(MetadataReceiveCount); got != strconv.Itoa(want) {
			t.Fatalf("delivery %d has %s %q", want, MetadataReceiveCount, got)
		}
		if want > 1 && time.Since(last) > 15*time.Second {
			t.Errorf("redelivery %d took %s: the nack did not shorten the visibility timeout", want, time.Since(last))
		}
		last = time.Now()
		sub.subsHandle(t, m, &handles)
		if want < 3 {
			m.Nack()
		} else {
			m.Ack()
		}
	}
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	for i, want := range [][]int32{{1}, {2}, nil} {
		var got []int32
		for _, v := range client.visibilityFor(handles[i]) {
			if v != 30 { // a heartbeat, if the machine is slow enough for one
				got = append(got, v)
			}
		}
		if !cmp.Equal(got, want) {
			t.Errorf("visibility changes for delivery %d: %v, want %v", i+1, got, want)
		}
	}
	assertNoGoroutines(t)
}

// subsHandle records the receipt handle of a message the subscriber holds.
func (s *Subscriber) subsHandle(t *testing.T, m *message.Message, handles *[]string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for sub := range s.subs {
		sub.mu.Lock()
		for r := range sub.held {
			if r.msg == m {
				*handles = append(*handles, r.handle)
			}
		}
		sub.mu.Unlock()
	}
}

// A handler that runs twice the visibility timeout keeps its message: nobody else receives it.
func TestHeartbeatKeepsSlowMessageInvisible(t *testing.T) {
	client := &faultyClient{Client: testClient(t)}
	name, url := createQueue(t, client.Client, "heartbeat", false)
	cfg := fastConfig(nil)
	cfg.VisibilityTimeout = 4 * time.Second
	cfg.HeartbeatInterval = time.Second // extends with 2s to spare, for a loaded moto
	pub, sub := newPair(t, client, cfg, PublisherConfig{})
	if err := pub.Publish(name, message.NewMessage("slow", []byte("x"))); err != nil {
		t.Fatal(err)
	}
	msgs, err := sub.Subscribe(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	m := next(t, msgs, 10*time.Second)
	var handles []string
	sub.subsHandle(t, m, &handles)

	// Another consumer polls the queue for the whole slow "handler".
	end := time.Now().Add(2 * cfg.VisibilityTimeout)
	for time.Now().Before(end) {
		out, err := client.Client.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), WaitTimeSeconds: 1})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Messages) > 0 {
			t.Fatalf("another consumer received the message %s while its handler was still running", aws.ToString(out.Messages[0].MessageId))
		}
	}
	m.Ack()
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	beats := client.visibilityFor(handles[0])
	if len(beats) < 2 {
		t.Errorf("%d heartbeat extensions over %s, want at least 2", len(beats), 2*cfg.VisibilityTimeout)
	}
	for _, v := range beats {
		if v != 4 {
			t.Errorf("heartbeat extended to %ds, want the visibility timeout 4s", v)
		}
	}
	if visible, inFlight := queueCounts(t, client.Client, url); visible != "0" || inFlight != "0" {
		t.Errorf("queue holds %s visible and %s in flight after the ack, want none", visible, inFlight)
	}
	assertNoGoroutines(t)
}

// Some entries of real DeleteMessageBatch calls fail with a server fault: they are deleted by a
// retry that carries only them.
func TestDeletePartialFailureRetried(t *testing.T) {
	client := &faultyClient{Client: testClient(t)}
	failedOnce := map[string]bool{}
	client.failDelete = func(call int, handle string) *types.BatchResultErrorEntry {
		if call == 0 && len(failedOnce) < 4 && !failedOnce[handle] {
			failedOnce[handle] = true
			return &types.BatchResultErrorEntry{Code: aws.String("InternalError"), Message: aws.String("injected"), SenderFault: false}
		}
		return nil
	}
	name, url := createQueue(t, client.Client, "delete-retry", false)
	cfg := fastConfig(nil)
	cfg.DeleteBatchInterval = 200 * time.Millisecond // room to fill a batch of 10
	pub, sub := newPair(t, client, cfg, PublisherConfig{})
	var sent []*message.Message
	for i := range 10 {
		sent = append(sent, message.NewMessage(watermill.NewUUID(), []byte(strconv.Itoa(i))))
	}
	if err := pub.Publish(name, sent...); err != nil {
		t.Fatal(err)
	}
	msgs, err := sub.Subscribe(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	for range sent {
		next(t, msgs, 10*time.Second).Ack()
	}
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	client.mu.Lock()
	calls := client.deleteCalls
	client.mu.Unlock()
	if len(failedOnce) == 0 {
		t.Fatal("no entry was made to fail")
	}
	// Every handle is sent once, except the failed ones, sent again exactly once, in a later call.
	seen := map[string]int{}
	for _, c := range calls {
		for _, h := range c {
			seen[h]++
		}
	}
	if len(seen) != len(sent) {
		t.Errorf("%d distinct receipt handles deleted, want %d", len(seen), len(sent))
	}
	for h, n := range seen {
		if want := map[bool]int{true: 2, false: 1}[failedOnce[h]]; n != want {
			t.Errorf("handle sent %d times, want %d (failed: %t)", n, want, failedOnce[h])
		}
	}
	if visible, inFlight := queueCounts(t, client.Client, url); visible != "0" || inFlight != "0" {
		t.Errorf("queue holds %s visible and %s in flight, want every message deleted", visible, inFlight)
	}
	assertNoGoroutines(t)
}

// An entry SQS refuses as the sender's fault is not retried but logged, with its message id.
func TestDeleteSenderFaultReported(t *testing.T) {
	client := &faultyClient{Client: testClient(t)}
	var victim atomic.Value
	client.failDelete = func(call int, handle string) *types.BatchResultErrorEntry {
		if handle == victim.Load() {
			return &types.BatchResultErrorEntry{Code: aws.String("ReceiptHandleIsInvalid"), Message: aws.String("injected"), SenderFault: true}
		}
		return nil
	}
	name, url := createQueue(t, client.Client, "delete-fault", false)
	logs := &records{}
	cfg := fastConfig(nil)
	cfg.Logger = slog.New(logs)
	cfg.VisibilityTimeout = 30 * time.Second // still in flight when the test looks
	cfg.HeartbeatInterval = 10 * time.Second
	pub, sub := newPair(t, client, cfg, PublisherConfig{})
	if err := pub.Publish(name, message.NewMessage("a", []byte("a"))); err != nil {
		t.Fatal(err)
	}
	msgs, err := sub.Subscribe(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	m := next(t, msgs, 10*time.Second)
	var handles []string
	sub.subsHandle(t, m, &handles)
	victim.Store(handles[0])
	m.Ack()
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	client.mu.Lock()
	calls := len(client.deleteCalls)
	client.mu.Unlock()
	if calls != 1 {
		t.Errorf("%d DeleteMessageBatch calls, want 1: a sender fault is not retried", calls)
	}
	reported := logs.find(slog.LevelError, "sqs: batch entry failed for good")
	if len(reported) != 1 {
		t.Fatalf("%d error logs, want 1", len(reported))
	}
	var entryErr *EntryError
	if err, _ := reported[0]["error"].(error); !errors.As(err, &entryErr) || entryErr.ID != m.Metadata.Get(MetadataMessageID) || entryErr.Code != "ReceiptHandleIsInvalid" {
		t.Errorf("logged %v, want an *EntryError for %s with its code", reported[0], m.Metadata.Get(MetadataMessageID))
	}
	// Not deleted, so at-least-once: it is still in the queue.
	if _, inFlight := queueCounts(t, client.Client, url); inFlight != "1" {
		t.Errorf("%s messages in flight, want the undeleted one", inFlight)
	}
}

// Entries of a real SendMessageBatch fail with a server fault: only they are sent again, and every
// message arrives once.
func TestPublishPartialFailureRetried(t *testing.T) {
	client := &faultyClient{Client: testClient(t)}
	client.failSend = func(call int, body string) *types.BatchResultErrorEntry {
		n, _ := strconv.Atoi(body)
		if call == 0 && n%3 == 0 {
			return &types.BatchResultErrorEntry{Code: aws.String("InternalError"), Message: aws.String("injected")}
		}
		return nil
	}
	name, _ := createQueue(t, client.Client, "send-retry", false)
	pub, sub := newPair(t, client, fastConfig(nil), PublisherConfig{RetryBackoff: 10 * time.Millisecond})
	var sent []*message.Message
	for i := range 25 {
		sent = append(sent, message.NewMessage(watermill.NewUUID(), []byte(strconv.Itoa(i))))
	}
	if err := pub.Publish(name, sent...); err != nil {
		t.Fatal(err)
	}
	client.mu.Lock()
	calls := client.sendCalls
	client.mu.Unlock()
	want := [][]string{
		{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"},
		{"0", "3", "6", "9"}, // the retry carries only the failed entries
		{"10", "11", "12", "13", "14", "15", "16", "17", "18", "19"},
		{"20", "21", "22", "23", "24"},
	}
	if diff := cmp.Diff(want, calls); diff != "" {
		t.Errorf("SendMessageBatch calls (-want +got):\n%s", diff)
	}
	msgs, err := sub.Subscribe(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for range sent {
		m := next(t, msgs, 10*time.Second)
		got[m.UUID]++
		m.Ack()
	}
	assertNoMessage(t, msgs, 1500*time.Millisecond)
	for _, m := range sent {
		if got[m.UUID] != 1 {
			t.Errorf("message %s (%s) received %d times, want once", m.UUID, m.Payload, got[m.UUID])
		}
	}
}

// An entry SQS refuses as the sender's fault fails Publish with its UUID; it is not retried.
func TestPublishSenderFaultReturned(t *testing.T) {
	client := &faultyClient{Client: testClient(t)}
	client.failSend = func(call int, body string) *types.BatchResultErrorEntry {
		if body == "bad" {
			return &types.BatchResultErrorEntry{Code: aws.String("InvalidParameterValue"), Message: aws.String("injected"), SenderFault: true}
		}
		return nil
	}
	name, url := createQueue(t, client.Client, "send-fault", false)
	pub, _ := newPair(t, client, fastConfig(nil), PublisherConfig{})
	bad := message.NewMessage("bad-uuid", []byte("bad"))
	err := pub.Publish(name, message.NewMessage("ok", []byte("ok")), bad)
	var entryErr *EntryError
	if !errors.As(err, &entryErr) || entryErr.ID != "bad-uuid" || entryErr.Code != "InvalidParameterValue" || !entryErr.SenderFault {
		t.Fatalf("error %v, want *EntryError for bad-uuid", err)
	}
	client.mu.Lock()
	calls := len(client.sendCalls)
	client.mu.Unlock()
	if calls != 1 {
		t.Errorf("%d SendMessageBatch calls, want 1", calls)
	}
	if visible, _ := queueCounts(t, client.Client, url); visible != "1" {
		t.Errorf("%s messages in the queue, want the good one", visible)
	}
}

// On a FIFO queue handlers run concurrently across message groups, each group in order; a nacked
// message comes back before the ones after it.
func TestFIFOGroupOrdering(t *testing.T) {
	client := testClient(t)
	name, _ := createQueue(t, client, "order", true)
	cfg := fastConfig(nil)
	cfg.MaxInFlight = 30
	// moto's ReceiveMessage is not atomic: two concurrent receives can both get messages of one
	// group, which SQS never does. One receiver keeps the test about this package, not moto.
	cfg.Receivers = 1
	pub, sub := newPair(t, client, cfg, PublisherConfig{})
	groups := []string{"a", "b", "c"}
	var sent []*message.Message
	for i := range 10 {
		for _, g := range groups {
			m := message.NewMessage(watermill.NewUUID(), []byte(fmt.Sprintf("%s%d", g, i)))
			m.Metadata.Set(MetadataMessageGroupID, g)
			sent = append(sent, m)
		}
	}
	if err := pub.Publish(name, sent...); err != nil {
		t.Fatal(err)
	}
	msgs, err := sub.Subscribe(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu        sync.Mutex
		seen      = map[string][]string{} // group → payloads in the order handlers started
		acked     = map[string]bool{}
		active    atomic.Int32
		maxActive atomic.Int32
		nacked    bool
		done      = make(chan struct{})
	)
	go func() {
		for m := range msgs {
			go func() { // like watermill's router: one goroutine per message
				n := active.Add(1)
				for old := maxActive.Load(); n > old && !maxActive.CompareAndSwap(old, n); old = maxActive.Load() {
				}
				g := m.Metadata.Get(MetadataMessageGroupID)
				mu.Lock()
				seen[g] = append(seen[g], string(m.Payload))
				nack := string(m.Payload) == "a2" && !nacked
				nacked = nacked || nack
				mu.Unlock()
				time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
				active.Add(-1)
				if nack {
					m.Nack()
					return
				}
				m.Ack()
				mu.Lock()
				acked[string(m.Payload)] = true
				if len(acked) == len(sent) {
					close(done)
				}
				mu.Unlock()
			}()
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		mu.Lock()
		t.Fatalf("only %d of %d acked: %v", len(acked), len(sent), seen)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, g := range groups {
		var want []string
		for i := range 10 {
			want = append(want, fmt.Sprintf("%s%d", g, i))
			if g == "a" && i == 2 {
				want = append(want, "a2") // nacked, then redelivered before a3
			}
		}
		if diff := cmp.Diff(want, seen[g]); diff != "" {
			t.Errorf("group %s handled out of order (-want +got):\n%s", g, diff)
		}
	}
	if maxActive.Load() < 2 {
		t.Errorf("at most %d handler ran at a time; groups should run concurrently", maxActive.Load())
	}
}

// Close waits for the messages handed out to be acked, releases those not handed out, sends the
// pending deletes, closes the channel and leaves no goroutine behind.
func TestCloseWithInFlightMessages(t *testing.T) {
	client := testClient(t)
	name, url := createQueue(t, client, "close", false)
	cfg := fastConfig(nil)
	cfg.MaxInFlight = 20
	cfg.CloseTimeout = 30 * time.Second
	cfg.DeleteBatchInterval = time.Hour // deletes only go out when a batch fills, or at Close
	pub, sub := newPair(t, client, cfg, PublisherConfig{})
	var sent []*message.Message
	for i := range 20 {
		sent = append(sent, message.NewMessage(watermill.NewUUID(), []byte(strconv.Itoa(i))))
	}
	if err := pub.Publish(name, sent...); err != nil {
		t.Fatal(err)
	}
	msgs, err := sub.Subscribe(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	var handed []*message.Message
	for range 5 {
		handed = append(handed, next(t, msgs, 10*time.Second))
	}
	waitInFlight(t, client, url, "20") // the subscription holds all 20
	closed := make(chan struct{})
	go func() { _ = sub.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned while handed-out messages were neither acked nor nacked")
	case <-time.After(300 * time.Millisecond):
	}
	for _, m := range handed {
		if m.Context().Err() != nil {
			t.Errorf("message %s context ended before its ack", m.Payload)
		}
		m.Ack()
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return after the acks")
	}
	for m := range msgs {
		t.Errorf("message %s handed out after Close started", m.Payload)
	}
	if visible, inFlight := queueCounts(t, client, url); visible != "15" || inFlight != "0" {
		t.Errorf("queue holds %s visible and %s in flight, want 15 released and 0 (5 deleted)", visible, inFlight)
	}
	assertNoGoroutines(t)
}

// A message never acked does not hold Close beyond CloseTimeout: its context ends and it is
// released for another consumer at once.
func TestCloseTimeoutReleasesUnackedMessage(t *testing.T) {
	client := testClient(t)
	name, url := createQueue(t, client, "close-timeout", false)
	cfg := fastConfig(nil)
	cfg.VisibilityTimeout = 30 * time.Second
	cfg.HeartbeatInterval = 10 * time.Second
	cfg.CloseTimeout = 3 * time.Second // longer than WaitTime: the poll in progress ends first
	pub, sub := newPair(t, client, cfg, PublisherConfig{})
	if err := pub.Publish(name, message.NewMessage("stuck", []byte("x"))); err != nil {
		t.Fatal(err)
	}
	msgs, err := sub.Subscribe(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	m := next(t, msgs, 10*time.Second)
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	if m.Context().Err() == nil {
		t.Error("the unacked message's context is still live after Close")
	}
	if visible, inFlight := queueCounts(t, client, url); visible != "1" || inFlight != "0" {
		t.Errorf("queue holds %s visible and %s in flight, want the message released", visible, inFlight)
	}
	assertNoGoroutines(t)
}

// A receiver never asks for more messages than the subscription has room for.
func TestMaxInFlightCapsReceives(t *testing.T) {
	client := &faultyClient{Client: testClient(t)}
	name, url := createQueue(t, client.Client, "cap", false)
	cfg := fastConfig(nil)
	cfg.MaxInFlight = 3
	cfg.Receivers = 3
	pub, sub := newPair(t, client, cfg, PublisherConfig{})
	var sent []*message.Message
	for i := range 20 {
		sent = append(sent, message.NewMessage(watermill.NewUUID(), []byte(strconv.Itoa(i))))
	}
	if err := pub.Publish(name, sent...); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	msgs, err := sub.Subscribe(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	var held []*message.Message
	for range 3 {
		held = append(held, next(t, msgs, 10*time.Second))
	}
	assertNoMessage(t, msgs, 1500*time.Millisecond)
	if _, inFlight := queueCounts(t, client.Client, url); inFlight != "3" {
		t.Errorf("%s messages in flight, want MaxInFlight 3", inFlight)
	}
	for _, m := range held {
		m.Ack()
	}
	next(t, msgs, 10*time.Second).Ack()
	cancel()
	for range msgs {
	}
	client.mu.Lock()
	defer client.mu.Unlock()
	for _, n := range client.receiveMax {
		if n > 3 {
			t.Errorf("a receive asked for %d messages with MaxInFlight 3", n)
		}
	}
}

func TestSubscribeUnknownQueue(t *testing.T) {
	_, sub := newPair(t, testClient(t), fastConfig(nil), PublisherConfig{})
	_, err := sub.Subscribe(context.Background(), "no-such-queue-at-all")
	var missing *types.QueueDoesNotExist
	if !errors.As(err, &missing) || !strings.Contains(err.Error(), `"no-such-queue-at-all"`) {
		t.Fatalf("error %v, want QueueDoesNotExist naming the queue", err)
	}
}

func TestClosedPublisherAndSubscriber(t *testing.T) {
	client := testClient(t)
	name, _ := createQueue(t, client, "closed", false)
	pub, sub := newPair(t, client, fastConfig(nil), PublisherConfig{})
	_ = pub.Close()
	_ = sub.Close()
	if err := pub.Publish(name, message.NewMessage("x", []byte("x"))); !errors.Is(err, ErrPublisherClosed) {
		t.Errorf("Publish after Close: %v, want ErrPublisherClosed", err)
	}
	if _, err := sub.Subscribe(context.Background(), name); !errors.Is(err, ErrSubscriberClosed) {
		t.Errorf("Subscribe after Close: %v, want ErrSubscriberClosed", err)
	}
	if err := sub.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// waitInFlight waits until the queue reports n messages in flight.
func waitInFlight(t *testing.T, client *sqs.Client, url, n string) {
	t.Helper()
	var inFlight string
	for range 200 {
		if _, inFlight = queueCounts(t, client, url); inFlight == n {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s messages in flight, want %s", inFlight, n)
}

func TestOnInFlightReportsHeldMessages(t *testing.T) {
	client := testClient(t)
	name, url := createQueue(t, client, "inflight", false)
	for i := range 3 {
		if _, err := client.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var seen []int
	var queues []string
	cfg := fastConfig(nil)
	cfg.OnInFlight = func(queue string, n int) {
		mu.Lock()
		defer mu.Unlock()
		seen, queues = append(seen, n), append(queues, queue)
	}
	_, sub := newPair(t, client, cfg, PublisherConfig{})
	msgs, err := sub.Subscribe(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	var got []*message.Message
	for len(got) < 3 {
		got = append(got, next(t, msgs, 10*time.Second))
	}
	mu.Lock()
	peak := 0
	for _, n := range seen {
		peak = max(peak, n)
	}
	mu.Unlock()
	if peak != 3 {
		t.Errorf("peak in flight reported %d with 3 messages held, want 3 (reports %v)", peak, seen)
	}
	got[0].Ack()
	got[1].Nack()
	got[2].Ack()
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		last := seen[len(seen)-1]
		mu.Unlock()
		if last == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("in flight still %d after every message was settled", last)
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, q := range queues {
		if q != name {
			t.Fatalf("OnInFlight queue %q, want %q", q, name)
		}
	}
}

// StopReceiving leaves the queue alone while handed-out messages finish: nothing sent afterwards is
// received (so no receive count goes up during a shutdown's drain), and a handed-out message can
// still be acked, with its context intact, and is deleted at Close.
func TestStopReceivingLeavesTheQueueAlone(t *testing.T) {
	client := testClient(t)
	name, url := createQueue(t, client, "stoprecv", false)
	cfg := fastConfig(nil)
	cfg.MaxInFlight = 20
	cfg.CloseTimeout = 30 * time.Second // it counts from StopReceiving
	pub, sub := newPair(t, client, cfg, PublisherConfig{})
	if err := pub.Publish(name, message.NewMessage(watermill.NewUUID(), []byte("in flight"))); err != nil {
		t.Fatal(err)
	}
	msgs, err := sub.Subscribe(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	handed := next(t, msgs, 10*time.Second)
	sub.StopReceiving()
	time.Sleep(cfg.WaitTime + 500*time.Millisecond) // a poll in progress has ended
	var later []*message.Message
	for i := range 3 {
		later = append(later, message.NewMessage(watermill.NewUUID(), []byte(strconv.Itoa(i))))
	}
	if err := pub.Publish(name, later...); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * cfg.WaitTime) // long enough for receivers that were still polling to take them
	if visible, inFlight := queueCounts(t, client, url); visible != "3" || inFlight != "1" {
		t.Errorf("after StopReceiving: %s visible, %s in flight; want the 3 new ones visible and only the handed-out one in flight", visible, inFlight)
	}
	if handed.Context().Err() != nil {
		t.Error("the handed-out message's context ended at StopReceiving")
	}
	handed.Ack()
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Subscribe(context.Background(), name); !errors.Is(err, ErrSubscriberClosed) {
		t.Errorf("Subscribe after StopReceiving and Close: %v", err)
	}
	out, err := client.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{
		QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameApproximateReceiveCount},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Messages) != 3 {
		t.Fatalf("%d messages left, want the 3 sent after StopReceiving (the acked one deleted)", len(out.Messages))
	}
	for _, m := range out.Messages {
		if n := m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)]; n != "1" {
			t.Errorf("message %s: receive count %s, want 1 (never received before)", aws.ToString(m.Body), n)
		}
	}
	assertNoGoroutines(t)
}
