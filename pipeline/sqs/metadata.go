// Package sqs is a watermill Publisher and Subscriber for Amazon SQS.
package sqs

// Metadata keys the Subscriber sets on every received message.
const (
	// MetadataMessageID is the SQS MessageId (also the watermill UUID for raw messages).
	MetadataMessageID = "sqs.message_id"
	// MetadataReceiveCount is ApproximateReceiveCount as a decimal string: 1 on first delivery.
	MetadataReceiveCount = "sqs.receive_count"
	// MetadataSentTimestamp is SentTimestamp, epoch milliseconds as a decimal string.
	MetadataSentTimestamp = "sqs.sent_timestamp"
	// MetadataMessageGroupID and MetadataDeduplicationID are read by the Publisher for FIFO queues
	// and set by the Subscriber on messages from FIFO queues.
	MetadataMessageGroupID  = "sqs.message_group_id"
	MetadataDeduplicationID = "sqs.deduplication_id"
)
