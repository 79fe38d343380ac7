// Package pipeline assembles thingpipe's stages: one watermill router per stage with its middleware
// (panic recovery, correlation id, tracing, metrics, dead-lettering, retry), the Pipeline that runs the
// selected stages and shuts them down gracefully, the configuration file, and the observability
// endpoints (/metrics, /healthz, /readyz).
package pipeline

import (
	"errors"
	"fmt"
)

// permanent is how a handler says "retrying will never help" (a payload that does not decode, an
// event that fails validation). events/ and workers/ return their own typed errors; any error in the
// chain with Permanent() == true counts, so this package does not import theirs.
type permanent interface{ Permanent() bool }

// IsPermanent reports whether err, or the first error it wraps that says either way, is permanent.
func IsPermanent(err error) bool {
	var p permanent
	return errors.As(err, &p) && p.Permanent()
}

// waitingOnOthers is how an error says the message is fine but another worker must finish first,
// e.g. workers/claim.ErrClaimedElsewhere while another process holds the claim to send an email.
// Like a dependency outage, that is never the message's fault.
type waitingOnOthers interface{ WaitingOnOthers() bool }

// IsWaitingOnOthers reports whether err, or an error it wraps, says it is waiting on another worker.
// Such a message is handed back to its source when its retries run out, never dead-lettered.
func IsWaitingOnOthers(err error) bool {
	var w waitingOnOthers
	return errors.As(err, &w) && w.WaitingOnOthers()
}

// PermanentError marks an error as permanent: the message goes to the dead-letter queue at once.
type PermanentError struct{ Err error }

// Permanent wraps err so that IsPermanent reports true. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

func (e *PermanentError) Error() string   { return e.Err.Error() }
func (e *PermanentError) Unwrap() error   { return e.Err }
func (e *PermanentError) Permanent() bool { return true }

// PanicError is a handler panic turned into an error. It is permanent: a panic is a bug that the same
// message will trigger again, so retrying it only delays the dead-letter queue.
type PanicError struct {
	Value any
	Stack string
}

func (e *PanicError) Error() string   { return fmt.Sprintf("panic: %v", e.Value) }
func (e *PanicError) Permanent() bool { return true }

// RetriesExhaustedError is returned by the retry middleware when a transient error persisted through
// every attempt.
type RetriesExhaustedError struct {
	Attempts int
	Err      error
}

func (e *RetriesExhaustedError) Error() string {
	return fmt.Sprintf("retries exhausted after %d attempts: %v", e.Attempts, e.Err)
}
func (e *RetriesExhaustedError) Unwrap() error { return e.Err }
