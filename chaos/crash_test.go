//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"
)

// crashScenario runs all four stages in one process under load, SIGKILLs it kills times at random
// moments (restarting it each time), then checks every outcome once it has drained.
func crashScenario(t *testing.T, devices, rounds, kills int) {
	e := setup(t)
	s := newScenario(t, e, devices)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	s.sendControl(t)
	loaded := make(chan map[string]sent, 1)
	interval := 300 * time.Millisecond
	go func() { loaded <- s.load(ctx, t, rounds, interval) }()
	window := time.Duration(rounds) * interval
	p := s.killLoop(t, kills, window)
	recs := <-loaded
	t.Logf("%d telemetry records sent to %d devices, %d kills", len(recs), devices, kills)

	firing, resolved := map[string]int{}, map[string]int{}
	waitFor(t, 3*time.Minute, "drained", func() (bool, string) {
		if p.exited() {
			t.Fatalf("thingpipe run exited: %s", p.tail())
		}
		ok, summary := s.checkArchive(t, recs)
		notActive, notBound := 0, 0
		for i, d := range s.devices {
			if str(s.item(t, e.out.DevicesTable, d), "state") != "ACTIVE" {
				notActive++
			}
			if str(s.item(t, e.out.BindingsTable, d), "userId") != fmt.Sprintf("user-%d", i) {
				notBound++
			}
		}
		s.drainInbox(t, firing, resolved)
		return ok && notActive == 0 && notBound == 0 && len(firing) == devices && len(resolved) == devices,
			fmt.Sprintf("archive: %s; %d devices not ACTIVE, %d not bound; FIRING emails for %d devices, RESOLVED for %d", summary, notActive, notBound, len(firing), len(resolved))
	})
	// Let redeliveries that are still under way land (batches, checkpoints, SQS visibility).
	time.Sleep(6 * time.Second)
	s.drainInbox(t, firing, resolved)
	p.stop(syscall.SIGTERM)
	if ok, summary := s.checkArchive(t, recs); !ok || !exactlyOnce(summary) {
		t.Errorf("archive: %s", summary)
	} else {
		t.Logf("archive: %s; %d batches found already in S3 after a kill", summary, s.retries(t))
	}
	for _, d := range s.devices {
		if firing[d] != 1 || resolved[d] != 1 {
			t.Errorf("%s: %d FIRING and %d RESOLVED emails for one incident, want 1 and 1 (FIRING sent at %v; kills at %v)", d, firing[d], resolved[d], s.firingAt[d], s.kills)
		}
	}
}

// exactlyOnce reads checkArchive's summary: nothing archived twice, nothing wrong, nothing unknown.
func exactlyOnce(summary string) bool {
	var sent, objects, missing, dups, wrong, unknown int
	_, err := fmt.Sscanf(summary, "%d records sent, %d objects, %d missing, %d archived more than once, %d with wrong content, %d unknown", &sent, &objects, &missing, &dups, &wrong, &unknown)
	return err == nil && missing == 0 && dups == 0 && wrong == 0 && unknown == 0
}

// TestCrashOnce is the quick variant `make test` runs: one SIGKILL.
func TestCrashOnce(t *testing.T) {
	crashScenario(t, 4, 30, 1)
}

// killLoop starts thingpipe run and kills it n times at random moments within window, restarting each time.
func (s *scenario) killLoop(t *testing.T, kills int, window time.Duration, args ...string) *proc {
	t.Helper()
	p := s.start(t, args...)
	for i := range kills {
		d := time.Duration(rand.Int64N(int64(window)))/time.Duration(kills) + time.Second
		time.Sleep(d)
		if p.exited() {
			t.Fatalf("thingpipe run exited on its own: %s", p.tail())
		}
		s.kills = append(s.kills, time.Now().UTC())
		p.stop(syscall.SIGKILL)
		t.Logf("kill %d after %s, at %s", i+1, d.Round(time.Millisecond), s.kills[i].Format("15:04:05.000"))
		p = s.start(t, args...)
	}
	return p
}
