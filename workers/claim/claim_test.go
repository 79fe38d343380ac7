package claim

import (
	"errors"
	"testing"
	"time"
)

func TestClaimLifecycle(t *testing.T) {
	now := time.Date(2026, 11, 23, 14, 0, 0, 0, time.UTC)
	var none Notice
	if none.Pending() || none.Claim("a", now, time.Second) == nil {
		t.Fatal("an empty notice is claimable")
	}
	n := Owe("evt-1")
	if !n.Pending() {
		t.Fatal("owed notice not pending")
	}
	if err := n.Claim("a", now, 10*time.Second); err != nil || !n.HeldBy("a") {
		t.Fatalf("first claim: %v", err)
	}
	if err := n.Claim("b", now.Add(5*time.Second), 10*time.Second); !errors.Is(err, ErrClaimedElsewhere) {
		t.Fatalf("claim over a live claim: %v", err)
	}
	if err := n.Claim("a", now.Add(5*time.Second), 10*time.Second); err != nil {
		t.Fatalf("owner re-claim: %v", err)
	}
	// a's lease ran out (a crashed): b takes over.
	if err := n.Claim("b", now.Add(16*time.Second), 10*time.Second); err != nil || !n.HeldBy("b") || n.HeldBy("a") {
		t.Fatalf("takeover of an expired claim: %v", err)
	}
	if !n.MarkNotified() || n.Pending() || n.MarkNotified() {
		t.Fatal("mark is not once-only")
	}
	if n.Claim("c", now.Add(time.Hour), time.Second) == nil {
		t.Fatal("a sent notice is claimable")
	}
}
