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

// UUIDAttribute is the SQS message attribute that carries the watermill UUID, so a round trip keeps
// it. A message without it (e.g. sent by an AWS IoT rule action) gets its SQS MessageId as UUID.
const UUIDAttribute = "watermill_uuid"

// MaxAttributes is SQS's limit of message attributes per message.
const MaxAttributes = 10

// isReserved reports keys the Subscriber sets from SQS itself; Publish never sends them as attributes
// (group and dedup ids go to their own fields), so a received message can be republished as it is.
func isReserved(key string) bool {
	switch key {
	case MetadataMessageID, MetadataReceiveCount, MetadataSentTimestamp, MetadataMessageGroupID, MetadataDeduplicationID:
		return true
	}
	return false
}
