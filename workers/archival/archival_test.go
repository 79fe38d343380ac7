package archival

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/thingpipe/thingpipe/events"
	tpkinesis "github.com/thingpipe/thingpipe/pipeline/kinesis"
)

var arrival0 = time.Date(2026, 11, 23, 23, 59, 59, 0, time.UTC)

func record(t testing.TB, shard string, i int, payload string) *message.Message {
	t.Helper()
	m := message.NewMessage(uuid.NewString(), []byte(payload))
	m.Metadata.Set(tpkinesis.MetadataPartitionKey, fmt.Sprintf("dev-%d", i%3))
	m.Metadata.Set(tpkinesis.MetadataShardID, shard)
	m.Metadata.Set(tpkinesis.MetadataSequenceNumber, fmt.Sprintf("4959033827149025660855969253836157109592157598913658%04d", i))
	m.Metadata.Set(tpkinesis.MetadataArrivalTime, arrival0.Add(time.Duration(i)*time.Second).Format(time.RFC3339Nano))
	return m
}

// memStore is an in-memory ObjectStore for the batching logic's unit tests.
type memStore struct {
	mu      sync.Mutex
	objects map[string][]byte
	puts    int
	lists   int
	fail    int // fail the next n puts
}

func (m *memStore) Put(_ context.Context, key string, body []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.puts++
	if m.fail > 0 {
		m.fail--
		return errors.New("s3 unavailable")
	}
	if m.objects == nil {
		m.objects = map[string][]byte{}
	}
	m.objects[key] = body
	return nil
}

func (m *memStore) List(_ context.Context, prefix, startAfter string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lists++
	var ks []string
	for k := range m.objects {
		if strings.HasPrefix(k, prefix) && k > startAfter {
			ks = append(ks, k)
		}
	}
	sort.Strings(ks)
	return ks, nil
}

func (m *memStore) Get(_ context.Context, key string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.objects[key]
	if !ok {
		return nil, fmt.Errorf("no object %s", key)
	}
	return b, nil
}

func (m *memStore) keys() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ks []string
	for k := range m.objects {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func lines(t testing.TB, body []byte) []map[string]any {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// handleAll runs the handler for every message concurrently (the subscriber keeps them in flight)
// and returns their results in order.
func handleAll(a *Archiver, msgs []*message.Message) []error {
	errs := make([]error, len(msgs))
	var wg sync.WaitGroup
	for i, m := range msgs {
		wg.Go(func() { errs[i] = a.Handle(m) })
	}
	wg.Wait()
	return errs
}

func TestNewRecordLine(t *testing.T) {
	tel, err := events.DecodeTelemetry("dev-42", []byte("{\"temperature\": 21.5,\n \"env\": {\"a\": [1, 2]}, \"thingName\": \"spoof\", \"big\": 12345678901234567890}"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRecord(tel, "shardId-000000000001", "42", arrival0)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"big":12345678901234567890,"env":{"a":[1,2]},"receivedAt":"2026-11-23T23:59:59Z","sequenceNumber":"42","temperature":21.5,"thingName":"dev-42"}`
	if string(r.Line) != want {
		t.Errorf("line\n got %s\nwant %s", r.Line, want)
	}
	for _, bad := range [][2]string{{"shard/1", "1"}, {"", "1"}, {"s", "x1"}, {"s", "-1"}} {
		if _, err := NewRecord(tel, bad[0], bad[1], arrival0); !events.IsPermanent(err) {
			t.Errorf("shard %q seq %q: %v", bad[0], bad[1], err)
		}
	}
}

func TestBatchKeyAndDeterministicBody(t *testing.T) {
	tel, _ := events.DecodeTelemetry("dev-1", []byte(`{"t":1}`))
	var b Batch
	for _, seq := range []string{"300", "1000", "20"} { // text order differs from numeric order
		r, _ := NewRecord(tel, "shardId-7", seq, arrival0.Add(time.Duration(len(seq))*time.Second))
		b = append(b, r)
	}
	b.Sort()
	if got := b.Key("telemetry"); got != "telemetry/dt=2026-11-24/hour=00/shardId-7/20-1000.ndjson.gz" {
		t.Errorf("key %s", got)
	}
	x, _ := b.Body()
	y, _ := b.Body()
	if !bytes.Equal(x, y) {
		t.Error("same batch, different bytes")
	}
	if ls := lines(t, x); len(ls) != 3 || ls[0]["sequenceNumber"] != "20" || ls[2]["sequenceNumber"] != "1000" {
		t.Errorf("lines %v", ls)
	}
}

func TestFlushTriggers(t *testing.T) {
	tests := []struct {
		name     string
		cfg      Config
		n        int
		wantObjs int
	}{
		{"by records", Config{MaxRecords: 5, MaxAge: time.Hour}, 10, 2},
		{"by bytes", Config{MaxRecords: 1000, MaxBytes: 1024, MaxAge: time.Hour}, 20, 2},
		{"by age", Config{MaxRecords: 1000, MaxAge: 50 * time.Millisecond}, 3, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := &memStore{}
			a, err := New(tt.cfg, store)
			if err != nil {
				t.Fatal(err)
			}
			var msgs []*message.Message
			for i := range tt.n {
				msgs = append(msgs, record(t, "shardId-0", i, fmt.Sprintf(`{"temperature":%d,"pad":"%s"}`, i, strings.Repeat("x", 80))))
			}
			for i, err := range handleAll(a, msgs) {
				if err != nil {
					t.Errorf("record %d: %v", i, err)
				}
			}
			total := 0
			for _, k := range store.keys() {
				total += len(lines(t, store.objects[k]))
			}
			if total != tt.n {
				t.Errorf("archived %d records, want %d (objects %v)", total, tt.n, store.keys())
			}
			if tt.name != "by bytes" && len(store.keys()) != tt.wantObjs {
				t.Errorf("objects %v, want %d", store.keys(), tt.wantObjs)
			}
			if err := a.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestShardsAreSeparateAndCloseFlushes(t *testing.T) {
	store := &memStore{}
	a, _ := New(Config{MaxRecords: 100, MaxAge: time.Hour}, store)
	msgs := []*message.Message{record(t, "shardId-0", 1, `{"a":1}`), record(t, "shardId-1", 2, `{"a":2}`), record(t, "shardId-0", 3, `{"a":3}`)}
	var wg sync.WaitGroup
	errs := make([]error, len(msgs))
	for i, m := range msgs {
		wg.Go(func() { errs[i] = a.Handle(m) })
	}
	time.Sleep(100 * time.Millisecond) // handlers are blocked: nothing is full or old
	if len(store.keys()) != 0 {
		t.Fatalf("written before flush: %v", store.keys())
	}
	if err := a.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if ks := store.keys(); len(ks) != 2 || !strings.Contains(ks[0], "/shardId-0/") || !strings.Contains(ks[1], "/shardId-1/") {
		t.Errorf("objects %v", ks)
	}
	if err := a.Handle(record(t, "shardId-0", 9, `{}`)); !errors.Is(err, ErrClosed) {
		t.Errorf("after close: %v", err)
	}
}

func TestFailedWriteFailsEveryRecordOfTheBatch(t *testing.T) {
	store := &memStore{fail: 1}
	a, _ := New(Config{MaxRecords: 4, MaxAge: time.Hour}, store)
	defer a.Close(context.Background())
	var msgs []*message.Message
	for i := range 4 {
		msgs = append(msgs, record(t, "shardId-0", i, `{"a":1}`))
	}
	for i, err := range handleAll(a, msgs) {
		if err == nil || events.IsPermanent(err) {
			t.Errorf("record %d: want a retryable error, got %v", i, err)
		}
	}
	// Redelivery of the same records: same batch, same key, written once.
	for i, err := range handleAll(a, msgs) {
		if err != nil {
			t.Errorf("redelivered record %d: %v", i, err)
		}
	}
	if ks := store.keys(); len(ks) != 1 {
		t.Errorf("objects %v", ks)
	}
}

func TestBadRecordsArePermanent(t *testing.T) {
	a, _ := New(Config{}, &memStore{})
	defer a.Close(context.Background())
	noSeq := record(t, "shardId-0", 1, `{}`)
	noSeq.Metadata.Set(tpkinesis.MetadataSequenceNumber, "")
	corpus, _ := os.ReadFile("../../testdata/bad/invalid-utf8.json")
	for name, m := range map[string]*message.Message{
		"no sequence number": noSeq,
		"not JSON":           record(t, "shardId-0", 2, `{"a":`),
		"invalid UTF-8":      record(t, "shardId-0", 3, string(corpus)),
		"bad shard": func() *message.Message {
			m := record(t, "x", 4, `{}`)
			m.Metadata.Set(tpkinesis.MetadataShardID, "../etc")
			return m
		}(),
	} {
		if err := a.Handle(m); !events.IsPermanent(err) {
			t.Errorf("%s: want permanent, got %v", name, err)
		}
	}
}

// A redelivery that starts inside an object (its records were added out of order and the checkpoint
// stopped in the middle of its range) acks the records the object holds and writes only the others.
func TestRedeliveryInsideAnObjectRange(t *testing.T) {
	store := &memStore{}
	msgs := make([]*message.Message, 10)
	for i := range msgs {
		msgs[i] = record(t, "shardId-0", i, `{"v":1}`)
	}
	a, _ := New(Config{MaxRecords: 4, MaxAge: time.Hour}, store)
	// Worker A wrote {0,1,2,4} (3 came late, into a batch that was never written) and died.
	for _, err := range handleAll(a, []*message.Message{msgs[0], msgs[1], msgs[2], msgs[4]}) {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Worker B: redelivered from the checkpoint at 2: 3..9, cut in two batches.
	b, _ := New(Config{MaxRecords: 3, MaxAge: 50 * time.Millisecond}, store)
	for i, err := range handleAll(b, msgs[3:]) {
		if err != nil {
			t.Fatalf("record %d: %v", i+3, err)
		}
	}
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, k := range store.keys() {
		for _, l := range lines(t, store.objects[k]) {
			count[l["sequenceNumber"].(string)]++
		}
	}
	if len(count) != 10 {
		t.Errorf("%d records archived, want 10: %v", len(count), store.keys())
	}
	for s, n := range count {
		if n != 1 {
			t.Errorf("record %s is in %d objects", s, n)
		}
	}
}

// A delivery withdrawn (its context cancelled: lease lost, Nack rewind) before the batch is written
// is left out of the object: the worker it is redelivered to archives it.
func TestWithdrawnDeliveryIsNotWritten(t *testing.T) {
	store := &memStore{}
	a, _ := New(Config{MaxRecords: 100, MaxAge: time.Hour}, store)
	keep := record(t, "shardId-0", 1, `{"v":1}`)
	gone := record(t, "shardId-0", 2, `{"v":2}`)
	ctx, cancel := context.WithCancel(context.Background())
	gone.SetContext(ctx)
	errs := make(chan error, 2)
	go func() { errs <- a.Handle(keep) }()
	go func() { errs <- a.Handle(gone) }()
	time.Sleep(50 * time.Millisecond) // both are in the open batch
	cancel()
	if err := a.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := []error{<-errs, <-errs}
	if (got[0] == nil) == (got[1] == nil) {
		t.Fatalf("want one nil and one context error, got %v", got)
	}
	keys := store.keys()
	if len(keys) != 1 {
		t.Fatalf("objects %v", keys)
	}
	ls := lines(t, store.objects[keys[0]])
	if len(ls) != 1 || ls[0]["v"] != 1.0 {
		t.Errorf("object holds %v, want only the kept record", ls)
	}
	a.Close(context.Background())
}
