package alerting

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/thingpipe/thingpipe/events"
	tpkinesis "github.com/thingpipe/thingpipe/pipeline/kinesis"
	"github.com/thingpipe/thingpipe/workers/claim"
	"github.com/thingpipe/thingpipe/workers/internal/ddbitem"
)

// Defaults from DESIGN.md.
const (
	DefaultAlertsTable = "thingpipe-alerts"
	DefaultAlertsTopic = "thingpipe-alerts"
	DefaultSource      = "thingpipe/alerting"
)

// ErrNotifying is returned (wrapped, retryable) while another worker is sending an incident's email.
var ErrNotifying = claim.ErrClaimedElsewhere

// Config configures the stage.
type Config struct {
	AlertsTable string   `json:"alertsTable"`
	Policies    []Policy `json:"policies"` // default DefaultPolicies()
	Source      string   `json:"source"`
	// NotifyLease is how long a worker holds the claim to send an email; sending gets half of it.
	NotifyLease time.Duration `json:"notifyLease"`
	// StateCacheTTL lets a worker skip the DynamoDB read for a reading that would change nothing in
	// the state it read less than this long ago (a hot reading of a FIRING alert, a normal reading
	// of a quiet one). Writes are never skipped and stay conditional. Cost: when another worker
	// changed the state meanwhile (shard handover), a transition can come up to this much later.
	// Default 5s; negative disables the cache.
	StateCacheTTL time.Duration    `json:"stateCacheTTL"`
	Logger        *slog.Logger     `json:"-"`
	Now           func() time.Time `json:"-"`
}

func (c Config) withDefaults() Config {
	if c.AlertsTable == "" {
		c.AlertsTable = DefaultAlertsTable
	}
	if c.Policies == nil {
		c.Policies = DefaultPolicies()
	}
	ps := make([]Policy, len(c.Policies))
	for i, p := range c.Policies {
		ps[i] = p.withDefaults()
	}
	c.Policies = ps
	if c.Source == "" {
		c.Source = DefaultSource
	}
	if c.NotifyLease == 0 {
		c.NotifyLease = 30 * time.Second
	}
	if c.StateCacheTTL == 0 {
		c.StateCacheTTL = 5 * time.Second
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
	if err := ValidatePolicies(c.Policies); err != nil {
		return fmt.Errorf("alerting config: policies: %w", err)
	}
	if c.NotifyLease < 10*time.Millisecond {
		return fmt.Errorf("alerting config: notifyLease %s is too short", c.NotifyLease)
	}
	return nil
}

// Store holds alert states with optimistic concurrency (see ddbitem.Table.Update).
type Store interface {
	Update(ctx context.Context, key string, change func(s *State, exists bool) (bool, error)) (State, bool, error)
	// MarkNotified records that notification id (of kind) of key was sent, in one write.
	MarkNotified(ctx context.Context, key string, kind Kind, id string) error
	// Release drops owner's claim on notification id (of kind) of key, which was not sent.
	Release(ctx context.Context, key string, kind Kind, id, owner string) error
}

// Notifier sends operator emails; it returns one error per notification (nil when sent).
type Notifier interface {
	Notify(ctx context.Context, ns []Notification) []error
}

// EventPublisher publishes outcome events (alert.firing, alert.resolved).
type EventPublisher interface {
	Publish(ctx context.Context, env events.Envelope) error
}

// DynamoStore is the Store on DynamoDB (key alertKey).
type DynamoStore struct {
	t ddbitem.Table[State]
}

// NewDynamoStore returns a store on table.
func NewDynamoStore(client ddbitem.Client, table string) *DynamoStore {
	return &DynamoStore{t: ddbitem.Table[State]{Client: client, Name: table, KeyAttr: "alertKey"}}
}

// MarkNotified implements Store.
func (s *DynamoStore) MarkNotified(ctx context.Context, key string, kind Kind, id string) error {
	_, err := s.t.MarkNotified(ctx, key, kind.attr(), id)
	return err
}

// Release implements Store.
func (s *DynamoStore) Release(ctx context.Context, key string, kind Kind, id, owner string) error {
	_, err := s.t.Release(ctx, key, kind.attr(), id, owner)
	return err
}

// Update implements Store.
func (s *DynamoStore) Update(ctx context.Context, key string, change func(*State, bool) (bool, error)) (State, bool, error) {
	return s.t.Update(ctx, key, change)
}

// Get returns the state of key.
func (s *DynamoStore) Get(ctx context.Context, key string) (State, bool, error) {
	st, _, found, err := s.t.Get(ctx, key)
	return st, found, err
}

// Stage is the alerting stage.
type Stage struct {
	cfg      Config
	store    Store
	notifier Notifier
	pub      EventPublisher
	cache    stateCache
}

// New returns the stage.
func New(cfg Config, store Store, notifier Notifier, pub EventPublisher) (*Stage, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if store == nil || notifier == nil || pub == nil {
		return nil, errors.New("alerting: store, notifier and publisher are required")
	}
	return &Stage{cfg: cfg.withDefaults(), store: store, notifier: notifier, pub: pub, cache: stateCache{m: map[string]cachedState{}}}, nil
}

// Handle is the watermill handler for the telemetry stream. The thing is the Kinesis partition key;
// the shard, sequence number and arrival time come from the subscriber's metadata.
func (s *Stage) Handle(msg *message.Message) error {
	thing := msg.Metadata.Get(tpkinesis.MetadataPartitionKey)
	if thing == "" {
		return events.Permanent("missing_partition_key", fmt.Errorf("telemetry message %s has no %s metadata", msg.UUID, tpkinesis.MetadataPartitionKey))
	}
	tel, err := events.DecodeTelemetry(thing, msg.Payload)
	if err != nil {
		return err
	}
	at := s.cfg.Now()
	if v := msg.Metadata.Get(tpkinesis.MetadataArrivalTime); v != "" {
		if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
			at = t
		}
	} else if t, ok := tel.DeviceTime(); ok {
		at = t
	}
	return s.Process(msg.Context(), tel, msg.Metadata.Get(tpkinesis.MetadataShardID), msg.Metadata.Get(tpkinesis.MetadataSequenceNumber), at)
}

// claimed is a notification this call holds the claim for.
type claimed struct {
	n   Notification
	key string
}

// Process evaluates every policy whose metric the reading carries, then sends the notifications
// owed (all of them in one PublishBatch).
func (s *Stage) Process(ctx context.Context, tel events.Telemetry, shard, seq string, at time.Time) error {
	owner := uuid.NewString()
	var (
		due      []claimed
		badField error
		busy     error
	)
	for _, p := range s.cfg.Policies {
		v, found, err := tel.Number(p.Metric)
		if err != nil {
			badField = err // evaluate the other policies; dead-letter the reading afterwards
			continue
		}
		if !found {
			continue
		}
		r := Reading{Value: v, At: at, Shard: shard, Seq: seq}
		key := Key(tel.ThingName, p.Name)
		if s.unchanged(key, p, r) {
			continue
		}
		var mine []Kind
		st, _, err := s.store.Update(ctx, key, func(st *State, _ bool) (bool, error) {
			mine = mine[:0]
			st.ThingName, st.Policy = tel.ThingName, p.Name
			changed, tr := Evaluate(p, st, r)
			if tr != None {
				s.cfg.Logger.DebugContext(ctx, "alert transition", "key", key, "status", st.Status)
			}
			// Claim what is owed in the same write; FIRING before RESOLVED.
			for _, kn := range []struct {
				kind Kind
				n    *claim.Notice
			}{{KindFiring, &st.Firing}, {KindResolved, &st.Resolved}} {
				if kn.n.Pending() && kn.n.Claim(owner, s.cfg.Now(), s.cfg.NotifyLease) == nil {
					mine = append(mine, kn.kind)
					changed = true
				}
			}
			return changed, nil
		})
		if err != nil {
			return fmt.Errorf("alerting %s: %w", key, err)
		}
		s.cache.put(key, st, s.cfg.Now())
		for _, k := range mine {
			id := st.Firing.ID
			if k == KindResolved {
				id = st.Resolved.ID
			}
			due = append(due, claimed{n: Notification{Kind: k, Policy: p, State: st, EventID: id}, key: key})
		}
		if (st.Firing.Pending() && !st.Firing.HeldBy(owner)) || (st.Resolved.Pending() && !st.Resolved.HeldBy(owner)) {
			busy = fmt.Errorf("alerting %s: %w", key, ErrNotifying)
		}
	}
	if err := s.send(ctx, due, owner); err != nil {
		return err
	}
	if busy != nil {
		return busy
	}
	if badField != nil {
		return badField
	}
	return nil
}

// send delivers due notifications: outcome events first, then the emails, then the marks.
//
// The order keeps the duplicate-email window as narrow as it can be: SNS standard topics cannot
// deduplicate an email, so the only thing between an accepted email and its "notified" mark is the
// mark itself (one conditional write per notice, issued together). Events go out before the email
// because a re-published event is harmless (same deterministic id, consumers drop it), whereas
// publishing them between email and mark would widen the window by an SNS call.
func (s *Stage) send(ctx context.Context, due []claimed, owner string) error {
	if len(due) == 0 {
		return nil
	}
	var failed error
	ready := due[:0:0]
	for _, d := range due {
		env, err := outcomeEvent(s.cfg.Source, d.n)
		if err != nil {
			// A bug, not a reason to withhold the email: log it and send.
			s.cfg.Logger.ErrorContext(ctx, "building alert event", "key", d.key, "err", err)
		} else if err := s.pub.Publish(ctx, env); err != nil {
			failed = errors.Join(failed, fmt.Errorf("publishing %s event: %w", d.key, err))
			s.release(ctx, d, owner)
			continue
		}
		ready = append(ready, d)
	}
	if len(ready) == 0 {
		return fmt.Errorf("alerting: %w", failed)
	}
	ns := make([]Notification, len(ready))
	for i, d := range ready {
		ns[i] = d.n
	}
	nctx, cancel := context.WithTimeout(ctx, s.cfg.NotifyLease/2)
	errs := s.notifier.Notify(nctx, ns)
	cancel()
	marks := make([]error, len(ready))
	var wg sync.WaitGroup
	for i, d := range ready {
		if errs[i] != nil {
			continue
		}
		// The email is out: from here until this mark lands, a crash sends it again once the
		// lease expires (docs/stages.md).
		wg.Go(func() { marks[i] = s.store.MarkNotified(ctx, d.key, d.n.Kind, d.n.EventID) })
	}
	wg.Wait()
	for i, d := range ready {
		switch {
		case errs[i] != nil:
			failed = errors.Join(failed, errs[i])
			// Most likely not sent. If SNS did accept it after all, releasing costs nothing more
			// than the lease would: the retry sends it again either way.
			s.release(ctx, d, owner)
		case marks[i] != nil:
			failed = errors.Join(failed, fmt.Errorf("marking %s notified: %w", d.key, marks[i]))
		default:
			s.cfg.Logger.InfoContext(ctx, "alert sent", "key", d.key, "kind", d.n.Kind, "subject", d.n.Subject())
		}
	}
	if failed != nil {
		return fmt.Errorf("alerting: %w", failed)
	}
	return nil
}

// release gives up a claim on a notification that was not sent, so the retry of the message need
// not wait out the lease. Best effort: if it fails the lease expires as after a crash.
func (s *Stage) release(ctx context.Context, d claimed, owner string) {
	if err := s.store.Release(ctx, d.key, d.n.Kind, d.n.EventID, owner); err != nil {
		s.cfg.Logger.WarnContext(ctx, "releasing alert claim", "key", d.key, "kind", d.n.Kind, "err", err)
	}
}

func outcomeEvent(source string, n Notification) (events.Envelope, error) {
	p, st := n.Policy.withDefaults(), n.State
	ms := func(v int64) time.Time { return time.UnixMilli(v).UTC() }
	if n.Kind == KindResolved {
		return events.New(n.EventID, source, ms(st.ResolvedAt), st.ThingName, &events.AlertResolved{
			IncidentID: st.IncidentID, Policy: p.Name, Severity: p.Severity, Metric: p.Metric, Comparison: string(p.Comparison),
			ClearThreshold: *p.Clear, Value: st.ResolvedValue, PeakValue: st.PeakValue, FiredAt: ms(st.FiredAt), ResolvedAt: ms(st.ResolvedAt),
		})
	}
	return events.New(n.EventID, source, ms(st.FiredAt), st.ThingName, &events.AlertFiring{
		IncidentID: st.IncidentID, Policy: p.Name, Severity: p.Severity, Metric: p.Metric, Comparison: string(p.Comparison),
		Threshold: p.Threshold, Value: st.FiredValue, Since: ms(st.BreachSince), FiredAt: ms(st.FiredAt), Consecutive: p.Consecutive,
	})
}

// unchanged reports whether r would leave key's recently read state as it is, with nothing owed.
func (s *Stage) unchanged(key string, p Policy, r Reading) bool {
	if s.cfg.StateCacheTTL < 0 {
		return false
	}
	st, ok := s.cache.get(key, s.cfg.Now(), s.cfg.StateCacheTTL)
	if !ok || st.Firing.Pending() || st.Resolved.Pending() {
		return false
	}
	changed, _ := Evaluate(p, &st, r)
	return !changed
}

// maxCached bounds the cache; past it the cache starts over.
const maxCached = 100_000

type cachedState struct {
	st State
	at time.Time
}

// stateCache holds the last state each key was read or written with.
type stateCache struct {
	mu sync.Mutex
	m  map[string]cachedState
}

func (c *stateCache) get(key string, now time.Time, ttl time.Duration) (State, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok || now.Sub(e.at) >= ttl {
		return State{}, false
	}
	return e.st, true
}

func (c *stateCache) put(key string, st State, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxCached {
		clear(c.m)
	}
	c.m[key] = cachedState{st: st, at: now}
}
