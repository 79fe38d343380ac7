package kinesis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
)

// DefaultLeaseTable is the DynamoDB table that holds shard leases and checkpoints.
const DefaultLeaseTable = "thingpipe-leases"

// Kinesis limits the Publisher and Subscriber respect.
const (
	maxRecordsPerPut   = 500
	maxBytesPerPut     = 5 << 20
	maxBytesPerRecord  = 1 << 20
	maxPartitionKeyLen = 256
)

// StreamCreator is the part of the Kinesis API used to create a stream when configured to.
type StreamCreator interface {
	CreateStream(ctx context.Context, in *kinesis.CreateStreamInput, opts ...func(*kinesis.Options)) (*kinesis.CreateStreamOutput, error)
	DescribeStreamSummary(ctx context.Context, in *kinesis.DescribeStreamSummaryInput, opts ...func(*kinesis.Options)) (*kinesis.DescribeStreamSummaryOutput, error)
}

// PublisherClient is the part of the Kinesis API the Publisher uses; *kinesis.Client satisfies it.
type PublisherClient interface {
	StreamCreator
	PutRecords(ctx context.Context, in *kinesis.PutRecordsInput, opts ...func(*kinesis.Options)) (*kinesis.PutRecordsOutput, error)
}

// SubscriberClient is the part of the Kinesis API the Subscriber uses; *kinesis.Client satisfies it.
type SubscriberClient interface {
	StreamCreator
	ListShards(ctx context.Context, in *kinesis.ListShardsInput, opts ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error)
	GetShardIterator(ctx context.Context, in *kinesis.GetShardIteratorInput, opts ...func(*kinesis.Options)) (*kinesis.GetShardIteratorOutput, error)
	GetRecords(ctx context.Context, in *kinesis.GetRecordsInput, opts ...func(*kinesis.Options)) (*kinesis.GetRecordsOutput, error)
}

// LeaseClient is the part of the DynamoDB API the lease table uses; *dynamodb.Client satisfies it.
type LeaseClient interface {
	CreateTable(ctx context.Context, in *dynamodb.CreateTableInput, opts ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error)
	DescribeTable(ctx context.Context, in *dynamodb.DescribeTableInput, opts ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
	Scan(ctx context.Context, in *dynamodb.ScanInput, opts ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error)
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
}

// ConfigError names the configuration field that is wrong.
type ConfigError struct {
	Field  string
	Reason string
}

func (e *ConfigError) Error() string { return fmt.Sprintf("kinesis config: %s: %s", e.Field, e.Reason) }

// PublisherConfig configures a Publisher.
type PublisherConfig struct {
	// Client is required.
	Client PublisherClient
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// MaxAttempts bounds PutRecords attempts per batch, counting the first (default 8).
	MaxAttempts int
	// RetryBaseDelay and RetryMaxDelay bound the exponential backoff with jitter between attempts
	// after throttling or per-entry failures (defaults 50ms and 2s).
	RetryBaseDelay time.Duration
	RetryMaxDelay  time.Duration
	// RawPayload publishes only the message payload, dropping its UUID and metadata. By default the
	// Publisher wraps them in a small binary envelope the Subscriber recognises (see docs/kinesis.md).
	RawPayload bool
	// CreateStream creates a missing stream with ShardCount shards (default 1) on first use.
	CreateStream bool
	ShardCount   int32
}

func (c PublisherConfig) withDefaults() PublisherConfig {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 8
	}
	if c.RetryBaseDelay == 0 {
		c.RetryBaseDelay = 50 * time.Millisecond
	}
	if c.RetryMaxDelay == 0 {
		c.RetryMaxDelay = 2 * time.Second
	}
	if c.ShardCount == 0 {
		c.ShardCount = 1
	}
	return c
}

// Validate reports the first invalid field.
func (c PublisherConfig) Validate() error {
	switch {
	case c.Client == nil:
		return &ConfigError{"Client", "is required"}
	case c.MaxAttempts < 1:
		return &ConfigError{"MaxAttempts", "must be at least 1"}
	case c.RetryBaseDelay < 0:
		return &ConfigError{"RetryBaseDelay", "must not be negative"}
	case c.RetryMaxDelay < c.RetryBaseDelay:
		return &ConfigError{"RetryMaxDelay", "must not be less than RetryBaseDelay"}
	case c.ShardCount < 1:
		return &ConfigError{"ShardCount", "must be at least 1"}
	}
	return nil
}

// StartPosition is where a consumer group starts reading a shard that has no checkpoint yet.
type StartPosition string

// Start positions.
const (
	StartTrimHorizon StartPosition = "TRIM_HORIZON"
	StartLatest      StartPosition = "LATEST"
)

// SubscriberConfig configures a Subscriber. Durations are all configurable so tests can use short ones.
type SubscriberConfig struct {
	// Kinesis and DynamoDB are required.
	Kinesis  SubscriberClient
	DynamoDB LeaseClient
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// ConsumerGroup is required: every group reads every shard, workers of one group share them.
	ConsumerGroup string
	// WorkerID identifies this process in the lease table (default hostname-pid-random). Each
	// Subscribe call runs its own worker named WorkerID#n.
	WorkerID string
	// LeaseTable defaults to DefaultLeaseTable; CreateLeaseTable creates it (on demand) when missing.
	LeaseTable       string
	CreateLeaseTable bool
	// CreateStream makes SubscribeInitialize create a missing stream with ShardCount shards (default 1).
	CreateStream bool
	ShardCount   int32

	// FailoverTime: a lease whose counter has not moved for this long on the local clock is expired
	// and may be taken by another worker (default 10s).
	FailoverTime time.Duration
	// RenewInterval is how often held leases are renewed (default FailoverTime/3; must be shorter
	// than FailoverTime).
	RenewInterval time.Duration
	// TakeInterval is how often the lease table is scanned to take expired leases and balance
	// (default FailoverTime/2).
	TakeInterval time.Duration
	// ShardSyncInterval is how often ListShards runs to find new shards (default 30s; it also runs
	// when a shard ends).
	ShardSyncInterval time.Duration
	// CheckpointInterval batches checkpoint writes in time (default 5s).
	CheckpointInterval time.Duration
	// MaxInFlight is the number of messages per shard delivered and not yet acked (default 1000).
	MaxInFlight int
	// StartPosition for shards without a checkpoint (default TRIM_HORIZON). Child shards of a
	// resharded stream always start at TRIM_HORIZON.
	StartPosition StartPosition
	// GetRecordsLimit is the Limit of each GetRecords call (default 10000).
	GetRecordsLimit int32
	// PollInterval is the least time between two GetRecords calls on one shard (default 200ms, the
	// 5 calls/s/shard limit). IdleBackoffMax caps the doubling wait after empty reads (default 2s).
	PollInterval   time.Duration
	IdleBackoffMax time.Duration
	// NackResendDelay is the wait before redelivering after a Nack (default 100ms).
	NackResendDelay time.Duration
	// DrainTimeout bounds how long a graceful stop waits for in-flight messages (default 10s).
	DrainTimeout time.Duration
	// OnLag, if set, is called after every GetRecords with the shard's MillisBehindLatest.
	OnLag func(stream, shardID string, millisBehindLatest int64)
	// OnShardReleased, if set, is called when this Subscriber stops reading a shard (lease lost or
	// handed over, shard ended, Close), so a per-shard lag gauge does not keep a stale value.
	OnShardReleased func(stream, shardID string)
}

func (c SubscriberConfig) withDefaults() SubscriberConfig {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.WorkerID == "" {
		host, _ := os.Hostname()
		var b [3]byte
		_, _ = rand.Read(b[:])
		c.WorkerID = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	}
	if c.LeaseTable == "" {
		c.LeaseTable = DefaultLeaseTable
	}
	if c.ShardCount == 0 {
		c.ShardCount = 1
	}
	if c.FailoverTime == 0 {
		c.FailoverTime = 10 * time.Second
	}
	if c.RenewInterval == 0 {
		c.RenewInterval = c.FailoverTime / 3
	}
	if c.TakeInterval == 0 {
		c.TakeInterval = c.FailoverTime / 2
	}
	if c.ShardSyncInterval == 0 {
		c.ShardSyncInterval = 30 * time.Second
	}
	if c.CheckpointInterval == 0 {
		c.CheckpointInterval = 5 * time.Second
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 1000
	}
	if c.StartPosition == "" {
		c.StartPosition = StartTrimHorizon
	}
	if c.GetRecordsLimit == 0 {
		c.GetRecordsLimit = 10000
	}
	if c.PollInterval == 0 {
		c.PollInterval = 200 * time.Millisecond
	}
	if c.IdleBackoffMax == 0 {
		c.IdleBackoffMax = 2 * time.Second
	}
	if c.NackResendDelay == 0 {
		c.NackResendDelay = 100 * time.Millisecond
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 10 * time.Second
	}
	return c
}

// Validate reports the first invalid field.
func (c SubscriberConfig) Validate() error {
	positive := func(name string, d time.Duration) error {
		if d <= 0 {
			return &ConfigError{name, "must be positive"}
		}
		return nil
	}
	switch {
	case c.Kinesis == nil:
		return &ConfigError{"Kinesis", "is required"}
	case c.DynamoDB == nil:
		return &ConfigError{"DynamoDB", "is required"}
	case c.ConsumerGroup == "":
		return &ConfigError{"ConsumerGroup", "is required"}
	case c.ShardCount < 1:
		return &ConfigError{"ShardCount", "must be at least 1"}
	case c.MaxInFlight < 1:
		return &ConfigError{"MaxInFlight", "must be at least 1"}
	case c.GetRecordsLimit < 1 || c.GetRecordsLimit > 10000:
		return &ConfigError{"GetRecordsLimit", "must be between 1 and 10000"}
	case c.StartPosition != StartTrimHorizon && c.StartPosition != StartLatest:
		return &ConfigError{"StartPosition", fmt.Sprintf("must be %s or %s, not %q", StartTrimHorizon, StartLatest, c.StartPosition)}
	}
	for _, f := range []struct {
		name string
		d    time.Duration
	}{
		{"FailoverTime", c.FailoverTime}, {"RenewInterval", c.RenewInterval}, {"TakeInterval", c.TakeInterval},
		{"ShardSyncInterval", c.ShardSyncInterval}, {"CheckpointInterval", c.CheckpointInterval},
		{"PollInterval", c.PollInterval}, {"IdleBackoffMax", c.IdleBackoffMax},
		{"NackResendDelay", c.NackResendDelay}, {"DrainTimeout", c.DrainTimeout},
	} {
		if err := positive(f.name, f.d); err != nil {
			return err
		}
	}
	if c.RenewInterval >= c.FailoverTime {
		return &ConfigError{"RenewInterval", "must be shorter than FailoverTime"}
	}
	if c.IdleBackoffMax < c.PollInterval {
		return &ConfigError{"IdleBackoffMax", "must not be less than PollInterval"}
	}
	return nil
}

// ErrClosed is returned by Publish and Subscribe after Close.
var ErrClosed = errors.New("kinesis: closed")
