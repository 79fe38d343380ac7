// Package claim makes a notification owed by a state change go out once, even with concurrent
// workers and crashes. The state change records a Notice; a worker claims it for a short lease in a
// conditional write, sends, then marks it notified in another conditional write. Another worker that
// finds a live claim backs off (its message is retried) instead of sending too. A crash after the
// claim leaves the notice pending; the lease expires and a redelivery sends it. The only duplicate
// left is a crash (or failed write) after a successful send and before the mark; events carry a
// deterministic id so consumers can drop that duplicate.
package claim

import (
	"errors"
	"time"
)

// ErrClaimedElsewhere means another worker holds a live claim on the notice: retry later. It is not
// a failure of the message: the pipeline waits for the claim to be marked or to expire (at most the
// lease) instead of counting it against the message's retries (see WaitingOnOthers).
var ErrClaimedElsewhere error = claimedElsewhere{}

type claimedElsewhere struct{}

func (claimedElsewhere) Error() string { return "notification is being sent by another worker" }

// WaitingOnOthers reports true: pipeline/ retries such errors without giving up on the message.
func (claimedElsewhere) WaitingOnOthers() bool { return true }

// Notice is one owed notification, stored inside the item whose change owes it.
type Notice struct {
	ID             string `dynamodbav:"id" json:"id"`
	Notified       bool   `dynamodbav:"notified" json:"notified"`
	ClaimedBy      string `dynamodbav:"claimedBy,omitempty" json:"claimedBy,omitempty"`
	ClaimedUntilMs int64  `dynamodbav:"claimedUntil,omitempty" json:"claimedUntil,omitempty"`
}

// Owe records a new notification with id (deterministic, so a re-sent notification is recognisable).
func Owe(id string) Notice { return Notice{ID: id} }

// Pending reports whether the notification is owed and not yet sent.
func (n Notice) Pending() bool { return n.ID != "" && !n.Notified }

// Claim takes the notice for owner until now+lease. It fails with ErrClaimedElsewhere while another
// owner's claim is live; an expired claim is taken over.
func (n *Notice) Claim(owner string, now time.Time, lease time.Duration) error {
	if !n.Pending() {
		return errors.New("claim: nothing pending")
	}
	if n.ClaimedBy != "" && n.ClaimedBy != owner && now.UnixMilli() < n.ClaimedUntilMs {
		return ErrClaimedElsewhere
	}
	n.ClaimedBy = owner
	n.ClaimedUntilMs = now.Add(lease).UnixMilli()
	return nil
}

// HeldBy reports whether owner holds the claim.
func (n Notice) HeldBy(owner string) bool { return n.Pending() && n.ClaimedBy == owner }

// MarkNotified records that the notification went out. It reports whether that changed anything.
func (n *Notice) MarkNotified() bool {
	if !n.Pending() {
		return false
	}
	n.Notified = true
	n.ClaimedBy = ""
	n.ClaimedUntilMs = 0
	return true
}
