// Package kinesis is a watermill Publisher and a consumer-group Subscriber for Amazon Kinesis Data
// Streams, with shard leases and checkpoints in DynamoDB.
package kinesis

// Metadata keys. The Publisher reads MetadataPartitionKey; the Subscriber sets all of them.
const (
	MetadataPartitionKey = "kinesis.partition_key"
	MetadataShardID      = "kinesis.shard_id"
	// MetadataSequenceNumber is the record's sequence number (a decimal string up to 128 bits).
	MetadataSequenceNumber = "kinesis.sequence_number"
	// MetadataArrivalTime is ApproximateArrivalTimestamp in RFC 3339 with nanoseconds.
	MetadataArrivalTime = "kinesis.arrival_time"
	// MetadataStream is the stream name the record was read from.
	MetadataStream = "kinesis.stream"
)
