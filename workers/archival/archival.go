// Package archival is the telemetry archival stage: it batches telemetry records per Kinesis shard
// and writes each batch as gzip NDJSON to S3 thingpipe-archive under
//
//	telemetry/dt=YYYY-MM-DD/hour=HH/<shardId>/<firstSeq>-<lastSeq>.ndjson.gz
//
// (date and hour of the first record's arrival, UTC). A handler call returns only once the batch
// holding its record is in S3, so the Kinesis checkpoint never passes an unarchived record; a failed
// write fails every handler of the batch and the records are redelivered. Names are deterministic: a
// batch of the same records written again overwrites the same object.
//
// Retries never put a record in a second object: before writing a batch the archiver lists the
// shard's objects of the batch's hour (one ListObjectsV2 per batch, starting after the last object
// known to end before the batch; see shardIndex). Objects it did not write that overlap the batch's
// sequence range (a worker wrote them and died, or lost its lease, before its checkpoint moved) are
// read once; the batch's records already in one are acked without being written again, and only the
// others form the new object. Deliveries withdrawn before the write (lease lost, Nack rewind) are
// left out of the batch.
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

// ObjectStore writes, lists and reads whole objects.
type ObjectStore interface {
	Put(ctx context.Context, key string, body []byte) error
	// List returns the keys starting with prefix that sort after startAfter (all if "").
	List(ctx context.Context, prefix, startAfter string) ([]string, error)
	Get(ctx context.Context, key string) ([]byte, error)
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
	return fmt.Sprintf("%s%s.ndjson.gz", b.keyStart(prefix), b[len(b)-1].Seq)
}

// keyStart is the key up to and including "<firstSeq>-": every object starting with this record.
func (b Batch) keyStart(prefix string) string {
	first := b[0]
	t := first.Arrival.UTC()
	return fmt.Sprintf("%s/dt=%s/hour=%02d/%s/%s-", prefix, t.Format("2006-01-02"), t.Hour(), first.Shard, first.Seq)
}

// Body is the gzip NDJSON object; the same records always give the same bytes.
func (b Batch) Body() ([]byte, error) { return b.encode(gzip.NewWriter(io.Discard)) }

// encode compresses the batch with zw (reset here), so callers can reuse compressors: each holds
// about 800 KB of tables.
func (b Batch) encode(zw *gzip.Writer) ([]byte, error) {
	var buf bytes.Buffer
	zw.Reset(&buf) // no name or modification time in the header: deterministic
	for _, r := range b {
		_, _ = zw.Write(r.Line) // a gzip.Writer keeps its first error; Close, checked below, returns it
		_, _ = zw.Write([]byte{'\n'})
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// entry is one record waiting in a batch, and its handler.
type entry struct {
	rec  Record
	ctx  context.Context // the delivery's; done when it was withdrawn (lease lost, Nack rewind)
	done chan error      // buffered: the outcome
}

// batch is a batch being filled.
type batch struct {
	entries []*entry
	bytes   int
	timer   *time.Timer
}

// Archiver is the archival stage.
type Archiver struct {
	cfg   Config
	store ObjectStore

	mu      sync.Mutex
	open    map[string]*batch      // by shard
	index   map[string]*shardIndex // by shard: objects known to be in S3
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
	a := &Archiver{cfg: cfg.withDefaults(), store: store, open: map[string]*batch{}, index: map[string]*shardIndex{}}
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
	e := &entry{rec: rec, ctx: ctx, done: make(chan error, 1)}
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return ErrClosed
	}
	a.addLocked(e)
	a.mu.Unlock()
	select {
	case err := <-e.done:
		if err != nil {
			return fmt.Errorf("archiving %s/%s: %w", rec.Shard, rec.Seq, err)
		}
		return nil
	case <-ctx.Done():
		// The delivery was withdrawn; the batch drops the record unless its write already started.
		return ctx.Err()
	}
}

func (a *Archiver) addLocked(e *entry) {
	shard := e.rec.Shard
	b := a.open[shard]
	if b == nil {
		b = &batch{}
		a.open[shard] = b
		b.timer = time.AfterFunc(a.cfg.MaxAge, func() { a.cut(shard, b) })
	}
	b.entries = append(b.entries, e)
	b.bytes += len(e.rec.Line) + 1
	if len(b.entries) >= a.cfg.MaxRecords || b.bytes >= a.cfg.MaxBytes || a.closed {
		a.detachLocked(shard, b)
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
		a.write(b.entries)
	}()
}

// write archives entries (one shard) and reports each entry's outcome, or puts it back in a batch.
func (a *Archiver) write(entries []*entry) {
	// Withdrawn deliveries are left out: the worker that gets them again archives them, and writing
	// them here as well could put them in two objects.
	live := entries[:0]
	for _, e := range entries {
		if e.ctx.Err() != nil {
			e.done <- e.ctx.Err()
			continue
		}
		live = append(live, e)
	}
	if len(live) == 0 {
		return
	}
	slices.SortFunc(live, func(x, y *entry) int { return x.rec.seq.Cmp(y.rec.seq) })
	recs := make(Batch, len(live))
	for i, e := range live {
		recs[i] = e.rec
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.WriteTimeout)
	defer cancel()
	a.mu.Lock()
	idx := a.index[recs[0].Shard]
	if idx == nil {
		idx = &shardIndex{}
		a.index[recs[0].Shard] = idx
	}
	a.mu.Unlock()
	stored, err := idx.lookup(ctx, a.store, a.cfg.Prefix, recs)
	if err != nil {
		a.cfg.Logger.Warn("archive lookup failed; the batch will be redelivered", "records", len(recs), "err", err)
		finish(live, err)
		return
	}
	// Records already in an object (a redelivery after a crash or a lease move) are acked as they
	// are; the others form the object.
	rest, restRecs := live[:0], recs[:0]
	for i, e := range live {
		if stored[e.rec.Seq] {
			e.done <- nil
			continue
		}
		rest = append(rest, e)
		restRecs = append(restRecs, recs[i])
	}
	if len(stored) > 0 {
		a.cfg.Logger.Info("archive retry: records already in S3 acked without a second object", "shard", recs[0].Shard, "already", len(live)-len(rest), "new", len(rest))
	}
	if len(rest) == 0 {
		return
	}
	err = a.put(ctx, restRecs)
	if err == nil {
		idx.wrote(a.cfg.Prefix, restRecs)
	}
	finish(rest, err)
}

func finish(entries []*entry, err error) {
	for _, e := range entries {
		e.done <- err
	}
}

// sequenceNumbers reads the sequenceNumber of every line of an archive object.
func sequenceNumbers(body []byte) ([]string, error) {
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	var seqs []string
	dec := json.NewDecoder(zr)
	for {
		var line struct {
			SequenceNumber string `json:"sequenceNumber"`
		}
		if err := dec.Decode(&line); err == io.EOF {
			return seqs, nil
		} else if err != nil {
			return nil, fmt.Errorf("line %d: %w", len(seqs)+1, err)
		}
		if line.SequenceNumber == "" {
			return nil, fmt.Errorf("line %d has no sequenceNumber", len(seqs)+1)
		}
		seqs = append(seqs, line.SequenceNumber)
	}
}

func (a *Archiver) put(ctx context.Context, recs Batch) error {
	zw := a.gzip.Get().(*gzip.Writer)
	body, err := recs.encode(zw)
	a.gzip.Put(zw)
	if err != nil {
		return fmt.Errorf("compressing batch: %w", err)
	}
	key := recs.Key(a.cfg.Prefix)
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
