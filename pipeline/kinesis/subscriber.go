package kinesis

import (
	"context"
	"fmt"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
)

// Subscriber is a watermill message.Subscriber reading a Kinesis stream (the topic) as one member
// of a consumer group. Each Subscribe call runs a worker that leases a fair share of the stream's
// shards in DynamoDB, delivers their records with up to MaxInFlight messages in flight per shard,
// and checkpoints what was acked. See docs/kinesis.md.
type Subscriber struct {
	cfg SubscriberConfig

	closing   chan struct{}
	closeOnce sync.Once
	// abandoned stops workers the way a crash would: no final checkpoint, no release, no renewal.
	abandoned   chan struct{}
	abandonOnce sync.Once
	workers     sync.WaitGroup

	mu          sync.Mutex
	closed      bool
	nextWorker  int
	tableExists bool

	lagMu sync.Mutex
	lag   map[ShardRef]int64
}

// ShardRef names a shard of a stream.
type ShardRef struct {
	Stream  string
	ShardID string
}

var (
	_ message.Subscriber           = (*Subscriber)(nil)
	_ message.SubscribeInitializer = (*Subscriber)(nil)
)

// NewSubscriber validates cfg and returns a Subscriber.
func NewSubscriber(cfg SubscriberConfig) (*Subscriber, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Subscriber{cfg: cfg, closing: make(chan struct{}), abandoned: make(chan struct{}), lag: map[ShardRef]int64{}}, nil
}

// Subscribe starts a worker of the consumer group on the stream topic. The channel closes after
// ctx is cancelled or Close is called, once the worker has drained its in-flight messages (bounded
// by DrainTimeout), written its final checkpoints and released its leases.
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	if topic == "" {
		return nil, &ConfigError{"topic", "stream name is empty"}
	}
	if err := s.ensureTable(ctx); err != nil {
		return nil, err
	}
	// A missing stream (or missing permissions) fails here, not in a log line later.
	shards, err := listShards(ctx, s.cfg.Kinesis, topic)
	if err != nil {
		return nil, fmt.Errorf("kinesis: subscribing to %s: %w", topic, err)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	s.nextWorker++
	id := fmt.Sprintf("%s#%d", s.cfg.WorkerID, s.nextWorker)
	s.workers.Add(1)
	s.mu.Unlock()

	w := newWorker(s, id, topic)
	go func() {
		defer s.workers.Done()
		w.run(ctx, shards)
	}()
	return w.out, nil
}

// SubscribeInitialize creates the stream (when CreateStream is set) and the lease table (when
// CreateLeaseTable is set; else it checks the table exists).
func (s *Subscriber) SubscribeInitialize(topic string) error {
	ctx := context.Background()
	if s.cfg.CreateStream {
		if err := createStream(ctx, s.cfg.Kinesis, topic, s.cfg.ShardCount); err != nil {
			return err
		}
	}
	return s.ensureTable(ctx)
}

// ensureTable creates the lease table when configured to, else checks once that it exists, so a
// missing table fails Subscribe rather than every later lease scan.
func (s *Subscriber) ensureTable(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tableExists {
		return nil
	}
	if s.cfg.CreateLeaseTable {
		if err := ensureLeaseTable(ctx, s.cfg.DynamoDB, s.cfg.LeaseTable); err != nil {
			return err
		}
	} else if _, err := s.cfg.DynamoDB.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(s.cfg.LeaseTable)}); err != nil {
		return fmt.Errorf("kinesis: lease table %s (set CreateLeaseTable to create it): %w", s.cfg.LeaseTable, err)
	}
	s.tableExists = true
	return nil
}

// Close stops every worker gracefully and waits for them.
func (s *Subscriber) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.closeOnce.Do(func() { close(s.closing) })
	s.workers.Wait()
	return nil
}

// abandon stops every worker as if the process had died: leases stay owned until they expire.
// Tests use it to prove failover.
func (s *Subscriber) abandon() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.abandonOnce.Do(func() { close(s.abandoned) })
	s.workers.Wait()
}

// Lag returns the last MillisBehindLatest seen for every shard this Subscriber has read.
func (s *Subscriber) Lag() map[ShardRef]int64 {
	s.lagMu.Lock()
	defer s.lagMu.Unlock()
	out := make(map[ShardRef]int64, len(s.lag))
	for k, v := range s.lag {
		out[k] = v
	}
	return out
}

// releaseShard forgets a shard this Subscriber no longer reads.
func (s *Subscriber) releaseShard(stream, shardID string) {
	s.lagMu.Lock()
	delete(s.lag, ShardRef{stream, shardID})
	s.lagMu.Unlock()
	if s.cfg.OnShardReleased != nil {
		s.cfg.OnShardReleased(stream, shardID)
	}
}

func (s *Subscriber) reportLag(stream, shardID string, millis int64) {
	s.lagMu.Lock()
	s.lag[ShardRef{stream, shardID}] = millis
	s.lagMu.Unlock()
	if s.cfg.OnLag != nil {
		s.cfg.OnLag(stream, shardID, millis)
	}
}
