package kinesis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// observation is what this worker last saw of a lease, and when on its own clock. A lease whose
// counter has not moved for FailoverTime is expired: no clock is compared across machines.
type observation struct {
	counter int64
	owner   string
	since   time.Time
}

// worker is one member of a consumer group on one stream: it syncs shards into the lease table,
// takes and renews leases and runs a shardReader per held lease.
type worker struct {
	s      *Subscriber
	cfg    SubscriberConfig
	log    *slog.Logger
	id     string
	stream string
	table  *leaseTable
	out    chan *message.Message

	// msgCtx is the parent of every delivered message's context; cancelled once the worker stopped.
	msgCtx    context.Context
	msgCancel context.CancelFunc

	readers  map[string]*shardReader
	readerWG sync.WaitGroup
	doneMu   sync.Mutex
	done     []*shardReader
	notify   chan struct{}

	obs         map[string]observation
	knownShards map[string]bool
}

func newWorker(s *Subscriber, id, stream string) *worker {
	w := &worker{
		s:           s,
		cfg:         s.cfg,
		log:         s.cfg.Logger.With("stream", stream, "group", s.cfg.ConsumerGroup, "worker", id),
		id:          id,
		stream:      stream,
		table:       &leaseTable{client: s.cfg.DynamoDB, table: s.cfg.LeaseTable, group: s.cfg.ConsumerGroup, stream: stream},
		out:         make(chan *message.Message),
		readers:     map[string]*shardReader{},
		notify:      make(chan struct{}, 1),
		obs:         map[string]observation{},
		knownShards: map[string]bool{},
	}
	w.msgCtx, w.msgCancel = context.WithCancel(context.Background())
	return w
}

func (w *worker) run(subCtx context.Context, shards []types.Shard) {
	// AWS calls use their own context so a graceful stop can still write checkpoints and releases.
	ctx, cancel := context.WithCancel(context.WithoutCancel(subCtx))
	defer func() {
		cancel()
		w.readerWG.Wait()
		w.msgCancel()
		close(w.out)
	}()

	renew := time.NewTicker(w.cfg.RenewInterval)
	defer renew.Stop()
	take := time.NewTicker(w.cfg.TakeInterval)
	defer take.Stop()
	syncT := time.NewTicker(w.cfg.ShardSyncInterval)
	defer syncT.Stop()

	w.createLeases(ctx, shards)
	w.balance(ctx)
	for {
		select {
		case <-subCtx.Done():
			w.shutdown(ctx, renew)
			return
		case <-w.s.closing:
			w.shutdown(ctx, renew)
			return
		case <-w.s.abandoned:
			for _, r := range w.readers {
				close(r.lost)
			}
			return
		case <-renew.C:
			w.renewAll(ctx)
		case <-take.C:
			w.balance(ctx)
		case <-syncT.C:
			w.syncShards(ctx)
		case <-w.notify:
			if w.collect() {
				// A shard ended: its children may be ready.
				w.syncShards(ctx)
				w.balance(ctx)
			}
		}
	}
}

// shutdown stops every reader gracefully, renewing their leases while they drain.
func (w *worker) shutdown(ctx context.Context, renew *time.Ticker) {
	for _, r := range w.readers {
		close(r.stop)
	}
	for len(w.readers) > 0 {
		select {
		case <-w.notify:
			w.collect()
		case <-renew.C:
			w.renewAll(ctx)
		}
	}
}

// collect forgets finished readers; it reports whether one reached SHARD_END.
func (w *worker) collect() bool {
	w.doneMu.Lock()
	done := w.done
	w.done = nil
	w.doneMu.Unlock()
	ended := false
	for _, r := range done {
		// renewAll drops a reader whose lease was lost before it finishes; a reader started since
		// for the same shard keeps it.
		if cur, ok := w.readers[r.shardID]; !ok || cur == r {
			delete(w.readers, r.shardID)
			w.s.releaseShard(w.stream, r.shardID)
		}
		ended = ended || r.reason == exitEnded
	}
	return ended
}

func (w *worker) startReader(ctx context.Context, l lease) {
	r := &shardReader{
		w:            w,
		shardID:      l.ShardID,
		hasParents:   len(l.Parents) > 0,
		stop:         make(chan struct{}),
		lost:         make(chan struct{}),
		readPos:      l.Checkpoint,
		acked:        l.Checkpoint,
		checkpointed: l.Checkpoint,
	}
	w.readers[l.ShardID] = r
	w.readerWG.Add(1)
	go func() {
		defer w.readerWG.Done()
		r.run(ctx)
		w.doneMu.Lock()
		w.done = append(w.done, r)
		w.doneMu.Unlock()
		select {
		case w.notify <- struct{}{}:
		default:
		}
	}()
	w.log.Info("kinesis: shard leased", "shard", l.ShardID, "checkpoint", l.Checkpoint)
}

func (w *worker) renewAll(ctx context.Context) {
	for id, r := range w.readers {
		err := w.table.renew(ctx, id, w.id)
		if errors.Is(err, errLeaseLost) {
			w.log.Info("kinesis: lease lost", "shard", id)
			close(r.lost)
			delete(w.readers, id)
		} else if err != nil {
			w.log.Warn("kinesis: renewing lease failed", "shard", id, "error", err)
		}
	}
}

// syncShards creates a lease for every shard of the stream that has none yet.
func (w *worker) syncShards(ctx context.Context) {
	shards, err := listShards(ctx, w.cfg.Kinesis, w.stream)
	if err != nil {
		w.log.Warn("kinesis: listing shards failed", "error", err)
		return
	}
	w.createLeases(ctx, shards)
}

func (w *worker) createLeases(ctx context.Context, shards []types.Shard) {
	for _, sh := range shards {
		id := aws.ToString(sh.ShardId)
		if w.knownShards[id] {
			continue
		}
		var parents []string
		for _, p := range []*string{sh.ParentShardId, sh.AdjacentParentShardId} {
			if p != nil && *p != "" {
				parents = append(parents, *p)
			}
		}
		if err := w.table.create(ctx, id, parents); err != nil {
			w.log.Warn("kinesis: creating lease failed", "shard", id, "error", err)
			continue
		}
		w.knownShards[id] = true
	}
}

func listShards(ctx context.Context, c SubscriberClient, stream string) ([]types.Shard, error) {
	var shards []types.Shard
	in := &kinesis.ListShardsInput{StreamName: aws.String(stream)}
	for {
		out, err := c.ListShards(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("kinesis: listing shards of %s: %w", stream, err)
		}
		shards = append(shards, out.Shards...)
		if aws.ToString(out.NextToken) == "" {
			return shards, nil
		}
		in = &kinesis.ListShardsInput{NextToken: out.NextToken}
	}
}

// balance scans the leases, takes expired ones up to this worker's fair share and, when still
// below it, steals one lease from the most loaded worker.
func (w *worker) balance(ctx context.Context) {
	leases, err := w.table.scan(ctx)
	if err != nil {
		w.log.Warn("kinesis: scanning leases failed", "error", err)
		return
	}
	now := time.Now()
	plan := planLeases(leases, w.obs, w.id, w.held(), now, w.cfg.FailoverTime)
	for _, l := range plan.take {
		w.tryTake(ctx, l, "take")
	}
	if plan.steal != nil {
		w.tryTake(ctx, *plan.steal, "steal")
	}
}

func (w *worker) held() map[string]bool {
	h := make(map[string]bool, len(w.readers))
	for id := range w.readers {
		h[id] = true
	}
	return h
}

func (w *worker) tryTake(ctx context.Context, l lease, how string) {
	got, err := w.table.take(ctx, l.ShardID, l.Counter, w.id)
	if errors.Is(err, errLeaseLost) {
		return // someone else moved first
	}
	if err != nil {
		w.log.Warn("kinesis: taking lease failed", "shard", l.ShardID, "error", err)
		return
	}
	if l.Owner != "" && l.Owner != w.id {
		w.log.Info("kinesis: lease "+how, "shard", l.ShardID, "from", l.Owner)
	}
	w.obs[got.Key] = observation{counter: got.Counter, owner: got.Owner, since: time.Now()}
	if got.Checkpoint == checkpointShardEnd {
		// Ended meanwhile: give it back at once.
		_ = w.table.checkpoint(ctx, got.ShardID, w.id, "", true)
		return
	}
	w.startReader(ctx, got)
}

// leasePlan is what one balancing round decided.
type leasePlan struct {
	take  []lease
	steal *lease
}

// planLeases is the pure lease-balancing logic. It updates obs (the local-clock observations),
// and decides which leases to take: free or expired ones up to the fair share
// ceil(active leases / live workers), then at most one stolen from the most loaded worker when
// that worker holds at least two more than this one. Leases at SHARD_END and children whose
// parents have not all ended are not active.
func planLeases(leases []lease, obs map[string]observation, me string, held map[string]bool, now time.Time, failover time.Duration) leasePlan {
	byShard := make(map[string]*lease, len(leases))
	seen := make(map[string]bool, len(leases))
	for i := range leases {
		l := &leases[i]
		byShard[l.ShardID] = l
		seen[l.Key] = true
		if o, ok := obs[l.Key]; !ok || o.counter != l.Counter || o.owner != l.Owner {
			obs[l.Key] = observation{counter: l.Counter, owner: l.Owner, since: now}
		}
	}
	for k := range obs {
		if !seen[k] {
			delete(obs, k)
		}
	}
	ready := func(l *lease) bool {
		for _, p := range l.Parents {
			if pl, ok := byShard[p]; ok && pl.Checkpoint != checkpointShardEnd {
				return false
			}
		}
		return true
	}
	var active, available []lease
	load := map[string]int{me: 0}
	for i := range leases {
		l := &leases[i]
		if l.Checkpoint == checkpointShardEnd || !ready(l) {
			continue
		}
		active = append(active, *l)
		expired := l.Owner == "" ||
			(l.Owner == me && !held[l.ShardID]) ||
			(l.Owner != me && now.Sub(obs[l.Key].since) >= failover)
		switch {
		case l.Owner == me && held[l.ShardID]:
			load[me]++
		case expired:
			available = append(available, *l)
		default:
			load[l.Owner]++
		}
	}
	if len(active) == 0 {
		return leasePlan{}
	}
	target := (len(active) + len(load) - 1) / len(load)
	var plan leasePlan
	sort.Slice(available, func(i, j int) bool { return available[i].ShardID < available[j].ShardID })
	for _, l := range available {
		if load[me]+len(plan.take) >= target {
			break
		}
		plan.take = append(plan.take, l)
	}
	mine := load[me] + len(plan.take)
	if mine >= target || len(plan.take) > 0 {
		return plan
	}
	// Steal one lease from the most loaded worker (ties broken by name, for determinism).
	victim, most := "", 0
	for owner, n := range load {
		if owner != me && (n > most || (n == most && owner < victim)) {
			victim, most = owner, n
		}
	}
	if victim == "" || most-mine < 2 {
		return plan
	}
	for i := range active {
		if active[i].Owner == victim {
			l := active[i]
			plan.steal = &l
			break
		}
	}
	return plan
}

// decode turns a Kinesis record into a window entry: an enveloped record gives back the published
// UUID, metadata and payload; any other record is raw, with a UUID derived from its position.
func (w *worker) decode(shardID string, rec *types.Record) entry {
	e := entry{seq: aws.ToString(rec.SequenceNumber), pk: aws.ToString(rec.PartitionKey)}
	if rec.ApproximateArrivalTimestamp != nil {
		e.arrival = *rec.ApproximateArrivalTimestamp
	}
	id, meta, payload, err := decodeEnvelope(rec.Data)
	switch {
	case err == nil && id != "":
		e.uuid, e.meta, e.payload = id, meta, payload
		return e
	case err != nil && !errors.Is(err, errNotEnvelope):
		w.log.Warn("kinesis: damaged envelope, delivering the record raw", "shard", shardID, "seq", e.seq, "error", err)
	}
	e.uuid, e.payload = recordUUID(w.stream, shardID, e.seq), rec.Data
	return e
}
