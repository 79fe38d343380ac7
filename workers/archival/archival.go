// Package archival is the telemetry archival stage: it batches telemetry records per Kinesis shard
// and writes each batch as gzip NDJSON to S3 thingpipe-archive under
//
//	telemetry/dt=YYYY-MM-DD/hour=HH/<shardId>/<firstSeq>-<lastSeq>.ndjson.gz
//
// (date and hour of the first record's arrival, UTC). A handler call returns only once the batch
// holding its record is in S3, so the Kinesis checkpoint never passes an unarchived record; a failed
// write fails every handler of the batch and the records are redelivered. Names are deterministic: a
// batch of the same records written again overwrites the same object.
package archival

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/thingpipe/thingpipe/events"
	tpkinesis "github.com/thingpipe/thingpipe/pipeline/kinesis"
)

// Defaults.
const (
	DefaultBucket = "thingpipe-archive"
	DefaultPrefix = "telemetry"
)

// ErrClosed is returned by Handle after Close; the record is redelivered to another worker.
var ErrClosed = errors.New("archiver closed")

// Config configures the stage. A batch is written when it holds MaxRecords records or MaxBytes of
// uncompressed NDJSON, or MaxAge after its first record arrived, whichever comes first. MaxRecords
// should not exceed the number of records the Kinesis subscriber keeps in flight per shard, or
// batches are cut by age.
type Config struct {
	Bucket       string           `json:"bucket"`
	Prefix       string           `json:"prefix"`
	MaxRecords   int              `json:"maxRecords"`
	MaxBytes     int              `json:"maxBytes"`
	MaxAge       time.Duration    `json:"maxAge"`
	WriteTimeout time.Duration    `json:"writeTimeout"`
	Logger       *slog.Logger     `json:"-"`
	Now          func() time.Time `json:"-"`
}

func (c Config) withDefaults() Config {
	if c.Bucket == "" {
		c.Bucket = DefaultBucket
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.MaxRecords == 0 {
		c.MaxRecords = 500
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = 4 << 20
	}
	if c.MaxAge == 0 {
		c.MaxAge = 5 * time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate reports the first bad field.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.MaxRecords < 1:
		return fmt.Errorf("archival config: maxRecords %d: want at least 1", c.MaxRecords)
	case c.MaxBytes < 1024:
		return fmt.Errorf("archival config: maxBytes %d: want at least 1024", c.MaxBytes)
	case c.MaxAge < time.Millisecond:
		return fmt.Errorf("archival config: maxAge %s is too short", c.MaxAge)
	case c.WriteTimeout < time.Millisecond:
		return fmt.Errorf("archival config: writeTimeout %s is too short", c.WriteTimeout)
	}
	return nil
}

// ObjectStore writes whole objects.
type ObjectStore interface {
	Put(ctx context.Context, key string, body []byte) error
}

// Record is one archived line.
type Record struct {
	Shard   string
	Seq     string
	Arrival time.Time
	Line    []byte // one NDJSON line without the newline
	seq     *big.Int
}

var shardRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)

// NewRecord builds the archive line for telemetry: the device's object plus thingName, receivedAt
// (arrival time, RFC 3339 UTC) and sequenceNumber, which override fields of the same names.
func NewRecord(tel events.Telemetry, shard, seq string, arrival time.Time) (Record, error) {
	if !shardRE.MatchString(shard) {
		return Record{}, events.Permanent("bad_metadata", fmt.Errorf("shard id %q is not usable in an S3 key", shard))
	}
	n, ok := new(big.Int).SetString(seq, 10)
	if !ok || n.Sign() < 0 {
		return Record{}, events.Permanent("bad_metadata", fmt.Errorf("sequence number %q is not a decimal number", seq))
	}
	fields := make(map[string]json.RawMessage, len(tel.Fields)+3)
	for k, v := range tel.Fields {
		fields[k] = v
	}
	put := func(k string, v any) {
		b, _ := json.Marshal(v)
		fields[k] = b
	}
	put("thingName", tel.ThingName)
	put("receivedAt", arrival.UTC().Format(time.RFC3339Nano))
	put("sequenceNumber", seq)
	line, err := json.Marshal(fields) // compacts nested values: one line per record
	if err != nil {
		return Record{}, events.Permanent("bad_payload", fmt.Errorf("encoding archive line: %w", err))
	}
	return Record{Shard: shard, Seq: seq, Arrival: arrival.UTC(), Line: line, seq: n}, nil
}

// Batch is records of one shard, written as one object.
type Batch []Record

// Sort orders the batch by sequence number (handlers run concurrently and add out of order).
func (b Batch) Sort() {
	slices.SortFunc(b, func(x, y Record) int { return x.seq.Cmp(y.seq) })
}

// Key is the batch's object key; the batch must be sorted.
func (b Batch) Key(prefix string) string {
	first, last := b[0], b[len(b)-1]
	t := first.Arrival.UTC()
	return fmt.Sprintf("%s/dt=%s/hour=%02d/%s/%s-%s.ndjson.gz", prefix, t.Format("2006-01-02"), t.Hour(), first.Shard, first.Seq, last.Seq)
}

// Body is the gzip NDJSON object; the same records always give the same bytes.
func (b Batch) Body() ([]byte, error) { return b.encode(gzip.NewWriter(io.Discard)) }

// encode compresses the batch with zw (reset here), so callers can reuse compressors: each holds
// about 800 KB of tables.
func (b Batch) encode(zw *gzip.Writer) ([]byte, error) {
	var buf bytes.Buffer
	zw.Reset(&buf) // no name or modification time in the header: deterministic
	for _, r := range b {
		zw.Write(r.Line)
		zw.Write([]byte{'\n'})
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// batch is a batch being filled, and the handlers waiting for it.
type batch struct {
	records Batch
	bytes   int
	timer   *time.Timer
	done    chan struct{}
	err     error
}

// Archiver is the archival stage.
type Archiver struct {
	cfg   Config
	store ObjectStore

	mu      sync.Mutex
	open    map[string]*batch // by shard
	closed  bool
	writing sync.WaitGroup
	gzip    sync.Pool // of *gzip.Writer
}

// New returns an archiver writing through store.
func New(cfg Config, store ObjectStore) (*Archiver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if store == nil {
		return nil, errors.New("archival: store is required")
	}
	a := &Archiver{cfg: cfg.withDefaults(), store: store, open: map[string]*batch{}}
	a.gzip.New = func() any { return gzip.NewWriter(io.Discard) }
	return a, nil
}

// Handle is the watermill handler for the telemetry stream. It blocks until the record's batch is in
// S3 (nil: ack) or its write failed (error: nack and redelivery).
func (a *Archiver) Handle(msg *message.Message) error {
	md := msg.Metadata
	for _, k := range []string{tpkinesis.MetadataPartitionKey, tpkinesis.MetadataShardID, tpkinesis.MetadataSequenceNumber} {
		if md.Get(k) == "" {
			return events.Permanent("missing_metadata", fmt.Errorf("telemetry message %s has no %s", msg.UUID, k))
		}
	}
	tel, err := events.DecodeTelemetry(md.Get(tpkinesis.MetadataPartitionKey), msg.Payload)
	if err != nil {
		return err
	}
	arrival := a.cfg.Now()
	if v := md.Get(tpkinesis.MetadataArrivalTime); v != "" {
		if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
			arrival = t
		}
	}
	rec, err := NewRecord(tel, md.Get(tpkinesis.MetadataShardID), md.Get(tpkinesis.MetadataSequenceNumber), arrival)
	if err != nil {
		return err
	}
	return a.Add(msg.Context(), rec)
}

// Add puts rec in its shard's batch and waits until that batch is written.
func (a *Archiver) Add(ctx context.Context, rec Record) error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return ErrClosed
	}
	b := a.open[rec.Shard]
	if b == nil {
		b = &batch{done: make(chan struct{})}
		a.open[rec.Shard] = b
		shard := rec.Shard
		b.timer = time.AfterFunc(a.cfg.MaxAge, func() { a.cut(shard, b) })
	}
	b.records = append(b.records, rec)
	b.bytes += len(rec.Line) + 1
	if len(b.records) >= a.cfg.MaxRecords || b.bytes >= a.cfg.MaxBytes {
		a.detachLocked(rec.Shard, b)
	}
	a.mu.Unlock()
	select {
	case <-b.done:
		if b.err != nil {
			return fmt.Errorf("archiving %s/%s: %w", rec.Shard, rec.Seq, b.err)
		}
		return nil
	case <-ctx.Done():
		// The batch may still be written; the redelivered record then lands in a later object too.
		return ctx.Err()
	}
}

// cut writes shard's batch if b is still the open one (the age timer).
func (a *Archiver) cut(shard string, b *batch) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.open[shard] == b {
		a.detachLocked(shard, b)
	}
}

// detachLocked closes b to new records and writes it in the background.
func (a *Archiver) detachLocked(shard string, b *batch) {
	delete(a.open, shard)
	b.timer.Stop()
	a.writing.Add(1)
	go func() {
		defer a.writing.Done()
		b.err = a.write(b.records)
		close(b.done)
	}()
}

func (a *Archiver) write(recs Batch) error {
	recs.Sort()
	zw := a.gzip.Get().(*gzip.Writer)
	body, err := recs.encode(zw)
	a.gzip.Put(zw)
	if err != nil {
		return fmt.Errorf("compressing batch: %w", err)
	}
	key := recs.Key(a.cfg.Prefix)
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.WriteTimeout)
	defer cancel()
	if err := a.store.Put(ctx, key, body); err != nil {
		a.cfg.Logger.Warn("archive write failed; the batch will be redelivered", "key", key, "records", len(recs), "err", err)
		return err
	}
	a.cfg.Logger.Debug("archived batch", "key", key, "records", len(recs), "bytes", len(body))
	return nil
}

// Flush writes every open batch now and waits for all writes in progress.
func (a *Archiver) Flush(ctx context.Context) error {
	a.mu.Lock()
	for shard, b := range a.open {
		a.detachLocked(shard, b)
	}
	a.mu.Unlock()
	done := make(chan struct{})
	go func() { a.writing.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("archival flush: %w", ctx.Err())
	}
}

// Close stops accepting records, writes the open batches and waits for every write.
func (a *Archiver) Close(ctx context.Context) error {
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
	return a.Flush(ctx)
}
