package sqs

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

const stringType = "String"

// sendEntry is a message checked and converted for SendMessageBatch.
type sendEntry struct {
	uuid  string
	entry types.SendMessageBatchRequestEntry
	size  int // bytes SQS counts against the message and batch limits
}

// toEntry converts a watermill message, or says precisely why SQS would refuse it.
func toEntry(msg *message.Message, fifo bool, defaultGroup string, maxBytes int) (sendEntry, error) {
	body := string(msg.Payload)
	if reason := checkText(body); reason != "" {
		return sendEntry{}, &MessageError{UUID: msg.UUID, Field: "payload", Reason: reason}
	}
	size := len(body)
	attrs := make(map[string]types.MessageAttributeValue, len(msg.Metadata)+1)
	if msg.UUID != "" {
		attrs[UUIDAttribute] = types.MessageAttributeValue{DataType: aws.String(stringType), StringValue: aws.String(msg.UUID)}
		size += len(UUIDAttribute) + len(stringType) + len(msg.UUID)
	}
	for k, v := range msg.Metadata {
		// SQS refuses empty attribute values; an empty value reads back as a missing key, the same.
		if isReserved(k) || v == "" {
			continue
		}
		if k == UUIDAttribute {
			return sendEntry{}, &MessageError{UUID: msg.UUID, Field: fmt.Sprintf("metadata key %q", k), Reason: "is reserved for the watermill UUID"}
		}
		if reason := checkAttributeName(k); reason != "" {
			return sendEntry{}, &MessageError{UUID: msg.UUID, Field: fmt.Sprintf("metadata key %q", k), Reason: reason}
		}
		if reason := checkText(v); reason != "" {
			return sendEntry{}, &MessageError{UUID: msg.UUID, Field: fmt.Sprintf("metadata value of %q", k), Reason: reason}
		}
		attrs[k] = types.MessageAttributeValue{DataType: aws.String(stringType), StringValue: aws.String(v)}
		size += len(k) + len(stringType) + len(v)
	}
	if len(attrs) > MaxAttributes {
		return sendEntry{}, &TooManyAttributesError{UUID: msg.UUID, Attributes: len(attrs), Max: MaxAttributes}
	}
	if size > maxBytes {
		return sendEntry{}, &MessageError{UUID: msg.UUID, Field: "size", Reason: fmt.Sprintf("%d bytes (payload and attributes) exceeds the limit of %d", size, maxBytes)}
	}
	e := types.SendMessageBatchRequestEntry{MessageBody: aws.String(body)}
	if len(attrs) > 0 {
		e.MessageAttributes = attrs
	}
	if fifo {
		group := msg.Metadata.Get(MetadataMessageGroupID)
		if group == "" {
			group = defaultGroup
		}
		if group == "" {
			return sendEntry{}, &MessageError{UUID: msg.UUID, Field: MetadataMessageGroupID, Reason: "is required for a FIFO queue (or set PublisherConfig.DefaultMessageGroupID)"}
		}
		if reason := checkFIFOID(group); reason != "" {
			return sendEntry{}, &MessageError{UUID: msg.UUID, Field: MetadataMessageGroupID, Reason: reason}
		}
		// The watermill UUID is the natural deduplication id: a retried Publish is not enqueued twice.
		dedup := msg.Metadata.Get(MetadataDeduplicationID)
		if dedup == "" {
			dedup = msg.UUID
		}
		if dedup == "" {
			return sendEntry{}, &MessageError{UUID: msg.UUID, Field: MetadataDeduplicationID, Reason: "is required for a FIFO queue when the message has no UUID"}
		}
		if reason := checkFIFOID(dedup); reason != "" {
			return sendEntry{}, &MessageError{UUID: msg.UUID, Field: MetadataDeduplicationID, Reason: reason}
		}
		e.MessageGroupId = aws.String(group)
		e.MessageDeduplicationId = aws.String(dedup)
	}
	return sendEntry{uuid: msg.UUID, entry: e, size: size}, nil
}

// checkText applies SQS's character rule for bodies and attribute values: valid UTF-8 of #x9, #xA,
// #xD, #x20–#xD7FF, #xE000–#xFFFD, #x10000–#x10FFFF, at least one character.
func checkText(s string) string {
	if s == "" {
		return "is empty; SQS needs at least one character"
	}
	for i, r := range s {
		switch {
		case r < 0x20 && r != '\t' && r != '\n' && r != '\r':
			return fmt.Sprintf("byte %d is control character %#x, which SQS does not allow", i, r)
		case r == utf8.RuneError:
			if _, n := utf8.DecodeRuneInString(s[i:]); n == 1 {
				return fmt.Sprintf("byte %d is not valid UTF-8 (SQS carries text only)", i)
			}
		case r == 0xFFFE || r == 0xFFFF:
			return fmt.Sprintf("byte %d is character %U, which SQS does not allow", i, r)
		}
	}
	return ""
}

// checkAttributeName applies SQS's rules for message attribute names.
func checkAttributeName(name string) string {
	switch {
	case name == "":
		return "is empty"
	case len(name) > 256:
		return fmt.Sprintf("is %d characters long, SQS allows 256", len(name))
	case strings.HasPrefix(name, "."), strings.HasSuffix(name, "."):
		return "must not start or end with a period"
	case strings.Contains(name, ".."):
		return "must not contain two periods in a row"
	case hasPrefixFold(name, "aws."), hasPrefixFold(name, "amazon."):
		return `must not start with "AWS." or "Amazon."`
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return fmt.Sprintf("character %d (%q) is not allowed; SQS allows letters, digits, '_', '-' and '.'", i, c)
		}
	}
	return ""
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// checkFIFOID applies SQS's rules for MessageGroupId and MessageDeduplicationId.
func checkFIFOID(id string) string {
	if id == "" || len(id) > 128 {
		return fmt.Sprintf("must be 1 to 128 characters, got %d", len(id))
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c < 0x21 || c > 0x7E {
			return fmt.Sprintf("character %d (%q) is not allowed; SQS allows letters, digits and punctuation", i, c)
		}
	}
	return ""
}

// received is a message the subscription holds, from receive until ack, nack or release.
type received struct {
	msg          *message.Message
	cancel       context.CancelFunc
	id           string // SQS MessageId
	handle       string
	group        string // FIFO MessageGroupId
	receiveCount int
	deadline     int64 // visibility end, unix nanoseconds; guarded by subscription.mu
}

// fromSQS converts a received SQS message. Binary attributes are skipped: metadata is text.
func fromSQS(ctx context.Context, m types.Message) *received {
	id := aws.ToString(m.MessageId)
	uuid := id
	md := make(message.Metadata, len(m.MessageAttributes)+5)
	for k, v := range m.MessageAttributes {
		if v.StringValue == nil {
			continue
		}
		if k == UUIDAttribute {
			uuid = *v.StringValue
			continue
		}
		md[k] = *v.StringValue
	}
	md[MetadataMessageID] = id
	count := 1
	if s, ok := m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)]; ok {
		md[MetadataReceiveCount] = s
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			count = n
		}
	}
	if s, ok := m.Attributes[string(types.MessageSystemAttributeNameSentTimestamp)]; ok {
		md[MetadataSentTimestamp] = s
	}
	group := m.Attributes[string(types.MessageSystemAttributeNameMessageGroupId)]
	if group != "" {
		md[MetadataMessageGroupID] = group
	}
	if s := m.Attributes[string(types.MessageSystemAttributeNameMessageDeduplicationId)]; s != "" {
		md[MetadataDeduplicationID] = s
	}
	msg := message.NewMessage(uuid, []byte(aws.ToString(m.Body)))
	msg.Metadata = md
	mctx, cancel := context.WithCancel(ctx)
	msg.SetContext(mctx)
	return &received{msg: msg, cancel: cancel, id: id, handle: aws.ToString(m.ReceiptHandle), group: group, receiveCount: count}
}
