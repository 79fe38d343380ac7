package sqs

import (
	"errors"
	"fmt"
)

var (
	// ErrSubscriberClosed is returned by Subscribe and SubscribeInitialize after Close.
	ErrSubscriberClosed = errors.New("sqs: subscriber is closed")
	// ErrPublisherClosed is returned by Publish after Close.
	ErrPublisherClosed = errors.New("sqs: publisher is closed")
)

// ConfigError names a configuration field with a bad value.
type ConfigError struct {
	Field  string
	Reason string
}

func (e *ConfigError) Error() string { return fmt.Sprintf("sqs: config: %s %s", e.Field, e.Reason) }

// MessageError is a message SQS cannot take as it is, found by Publish before anything is sent.
type MessageError struct {
	UUID   string // the watermill UUID
	Field  string // what is wrong: "payload", `metadata key "a b"`, "sqs.message_group_id" …
	Reason string
}

func (e *MessageError) Error() string {
	return fmt.Sprintf("sqs: message %s: %s: %s", e.UUID, e.Field, e.Reason)
}

// TooManyAttributesError is a message whose metadata needs more message attributes than SQS allows
// (MaxAttributes, of which one carries the watermill UUID). Publish returns it before sending anything.
type TooManyAttributesError struct {
	UUID       string
	Attributes int // attributes the message would need, the UUID attribute included
	Max        int
}

func (e *TooManyAttributesError) Error() string {
	return fmt.Sprintf("sqs: message %s needs %d message attributes (metadata plus %s), SQS allows %d",
		e.UUID, e.Attributes, UUIDAttribute, e.Max)
}

// EntryError is one entry of a batch call that SQS refused, after the retries allowed.
type EntryError struct {
	Operation   string // SendMessageBatch, DeleteMessageBatch or ChangeMessageVisibilityBatch
	ID          string // the watermill UUID for sends, the SQS MessageId otherwise
	Code        string
	Message     string
	SenderFault bool
}

func (e *EntryError) Error() string {
	return fmt.Sprintf("sqs: %s entry %s failed: %s: %s (sender fault: %t)", e.Operation, e.ID, e.Code, e.Message, e.SenderFault)
}
