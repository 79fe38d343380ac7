package archival

import (
	"context"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"sync"
	"time"
)

// keepBelow is how many known objects entirely below a batch's first record an index keeps: records
// delivered out of order by concurrent handlers may still land near them.
const keepBelow = 8

// shardIndex is what one archiver knows of a shard's objects in S3, so that a batch is checked
// against them before it is written: a record already in an object is never written into a second one.
//
// Each batch costs one ListObjectsV2 of its hour's prefix, starting after the newest known object that
// ends before the batch (so a List usually returns one or two keys; the first batch of a shard in a
// process lists the whole hour and the previous one). Objects this archiver did not write and that
// overlap the batch's sequence range are read once (GetObject) for their sequence numbers. Keys are
// compared as strings, which orders them like the sequence numbers as long as a shard's sequence
// numbers have the same number of digits (Kinesis: 56).
type shardIndex struct {
	mu      sync.Mutex
	objects map[string]*knownObject // by key
	listed  bool                    // the first full listing was done
}

type knownObject struct {
	key         string
	hourPrefix  string
	first, last *big.Int
	seqs        map[string]bool // nil until read
}

// hourPrefix is ".../dt=…/hour=HH/<shard>/" of a record.
func hourPrefix(prefix string, r Record, t time.Time) string {
	t = t.UTC()
	return fmt.Sprintf("%s/dt=%s/hour=%02d/%s/", prefix, t.Format("2006-01-02"), t.Hour(), r.Shard)
}

// parseKey reads "<first>-<last>.ndjson.gz" after hp.
func parseKey(hp, key string) (first, last *big.Int, ok bool) {
	name, found := strings.CutPrefix(key, hp)
	if !found {
		return nil, nil, false
	}
	name, found = strings.CutSuffix(name, ".ndjson.gz")
	if !found {
		return nil, nil, false
	}
	f, l, found := strings.Cut(name, "-")
	if !found {
		return nil, nil, false
	}
	first, ok1 := new(big.Int).SetString(f, 10)
	last, ok2 := new(big.Int).SetString(l, 10)
	return first, last, ok1 && ok2
}

// lookup returns the sequence numbers of recs (sorted, one shard) that are already in S3.
func (x *shardIndex) lookup(ctx context.Context, store ObjectStore, prefix string, recs Batch) (map[string]bool, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.objects == nil {
		x.objects = map[string]*knownObject{}
	}
	lo, hi := recs[0], recs[len(recs)-1]
	hp := hourPrefix(prefix, lo, lo.Arrival)
	prefixes := []string{hp}
	if !x.listed {
		// A batch that started in the previous hour may hold this batch's records.
		prefixes = append(prefixes, hourPrefix(prefix, lo, lo.Arrival.Add(-time.Hour)))
	}
	for _, p := range prefixes {
		keys, err := store.List(ctx, p, x.startAfter(p, lo.seq))
		if err != nil {
			return nil, err
		}
		for _, k := range keys {
			if x.objects[k] != nil {
				continue
			}
			if first, last, ok := parseKey(p, k); ok {
				x.objects[k] = &knownObject{key: k, hourPrefix: p, first: first, last: last}
			}
		}
	}
	x.listed = true
	var stored map[string]bool
	for _, o := range x.objects {
		if o.first.Cmp(hi.seq) > 0 || o.last.Cmp(lo.seq) < 0 {
			continue
		}
		if o.seqs == nil {
			body, err := store.Get(ctx, o.key)
			if err != nil {
				return nil, err
			}
			seqs, err := sequenceNumbers(body)
			if err != nil {
				return nil, fmt.Errorf("reading %s: %w", o.key, err)
			}
			o.seqs = make(map[string]bool, len(seqs))
			for _, s := range seqs {
				o.seqs[s] = true
			}
		}
		for _, r := range recs {
			if o.seqs[r.Seq] {
				if stored == nil {
					stored = map[string]bool{}
				}
				stored[r.Seq] = true
			}
		}
	}
	x.prune(lo.seq)
	return stored, nil
}

// startAfter is the key of the newest known object in hp that ends before seq: objects that may
// overlap a batch starting at seq sort after it. "" lists the whole prefix.
func (x *shardIndex) startAfter(hp string, seq *big.Int) string {
	var best *knownObject
	for _, o := range x.objects {
		if o.hourPrefix == hp && o.last.Cmp(seq) < 0 && (best == nil || o.first.Cmp(best.first) > 0) {
			best = o
		}
	}
	if best == nil {
		return ""
	}
	return best.key
}

// prune forgets all but the keepBelow newest objects that end before seq.
func (x *shardIndex) prune(seq *big.Int) {
	var below []*knownObject
	for _, o := range x.objects {
		if o.last.Cmp(seq) < 0 {
			below = append(below, o)
		}
	}
	if len(below) <= keepBelow {
		return
	}
	slices.SortFunc(below, func(a, b *knownObject) int { return b.last.Cmp(a.last) })
	for _, o := range below[keepBelow:] {
		delete(x.objects, o.key)
	}
}

// wrote records an object this archiver wrote (recs sorted).
func (x *shardIndex) wrote(prefix string, recs Batch) {
	seqs := make(map[string]bool, len(recs))
	for _, r := range recs {
		seqs[r.Seq] = true
	}
	lo := recs[0]
	o := &knownObject{key: recs.Key(prefix), hourPrefix: hourPrefix(prefix, lo, lo.Arrival), first: lo.seq, last: recs[len(recs)-1].seq, seqs: seqs}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.objects == nil {
		x.objects = map[string]*knownObject{}
	}
	x.objects[o.key] = o
}
