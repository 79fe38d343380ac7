package events

import (
	"errors"
	"fmt"
)

// Kinds of decoding failure. Every *DecodeError unwraps to one of them, so callers can test
// errors.Is(err, events.ErrMissingField) without parsing messages.
var (
	ErrTooLarge      = errors.New("payload too large")
	ErrNotJSON       = errors.New("not valid JSON")
	ErrInvalidUTF8   = errors.New("invalid UTF-8")
	ErrTooDeep       = errors.New("nested too deeply")
	ErrMissingField  = errors.New("missing field")
	ErrWrongType     = errors.New("wrong type")
	ErrInvalidValue  = errors.New("invalid value")
	ErrDuplicateKey  = errors.New("duplicate key")
	ErrNumberRange   = errors.New("number out of range")
	ErrUnknownType   = errors.New("unknown event type")
	ErrBadThingName  = errors.New("invalid thing name")
	ErrMissingHeader = errors.New("missing message metadata")
)

// DecodeError says which input could not be decoded, which field was wrong (a dotted JSON path, empty
// for the payload as a whole) and why. It is permanent: redelivering the same bytes cannot succeed.
type DecodeError struct {
	Input  string // what was being decoded, e.g. "binding request"
	Field  string // dotted JSON path of the bad field; "" when the whole payload is bad
	Kind   error  // one of the Err* kinds above
	Detail string // human detail, e.g. `contains "/"`
}

func (e *DecodeError) Error() string {
	var s string
	if e.Field != "" {
		s = fmt.Sprintf("decoding %s: field %q: %v", e.Input, e.Field, e.Kind)
	} else {
		s = fmt.Sprintf("decoding %s: %v", e.Input, e.Kind)
	}
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// Unwrap returns the kind, for errors.Is.
func (e *DecodeError) Unwrap() error { return e.Kind }

// Permanent marks the error as not worth retrying.
func (e *DecodeError) Permanent() bool { return true }

// PermanentError wraps an error that no retry can fix (a poison message). The pipeline dead-letters
// such messages at once, with Reason.
type PermanentError struct {
	Reason string
	Err    error
}

// Permanent wraps err as permanent with a short machine-readable reason (e.g. "bad_payload").
func Permanent(reason string, err error) error {
	return &PermanentError{Reason: reason, Err: err}
}

func (e *PermanentError) Error() string {
	if e.Err == nil {
		return e.Reason
	}
	return e.Reason + ": " + e.Err.Error()
}

func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent marks the error as not worth retrying.
func (e *PermanentError) Permanent() bool { return true }

type permanent interface{ Permanent() bool }

// IsPermanent reports whether err (or anything it wraps) is permanent: the message that caused it
// should be dead-lettered rather than retried. Everything else, notably AWS failures, is retryable.
func IsPermanent(err error) bool {
	var p permanent
	return errors.As(err, &p) && p.Permanent()
}

// Reason returns a short reason for a permanent error, for dead-letter metadata: the
// PermanentError's Reason, or "bad_payload" and the field for a DecodeError.
func Reason(err error) string {
	var pe *PermanentError
	if errors.As(err, &pe) {
		return pe.Reason
	}
	var de *DecodeError
	if errors.As(err, &de) {
		return "bad_payload: " + de.Error()
	}
	if err == nil {
		return ""
	}
	return err.Error()
}
