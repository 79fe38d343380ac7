//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
)

// TestCrashRepeatedly: several SIGKILLs at random moments under a longer load.
func TestCrashRepeatedly(t *testing.T) {
	crashScenario(t, 6, 60, 4)
}

// owners returns the owner of each of group's leases (shardId -> owner, "" if free).
func (s *scenario) owners(t *testing.T, group string) map[string]string {
	t.Helper()
	out, err := s.e.ddb.Scan(t.Context(), &dynamodb.ScanInput{TableName: aws.String(s.e.out.LeasesTable), ConsistentRead: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	owners := map[string]string{}
	for _, it := range out.Items {
		if !strings.HasPrefix(str(it, "leaseKey"), group+"#") || str(it, "checkpoint") == "SHARD_END" {
			continue
		}
		owners[str(it, "shardId")] = str(it, "owner")
	}
	return owners
}

func distinct(owners map[string]string) []string {
	set := map[string]bool{}
	for _, o := range owners {
		set[o] = true
	}
	var out []string
	for o := range set {
		out = append(out, o)
	}
	sort.Strings(out)
	return out
}

// TestTakeover: three `thingpipe run --stages alerting,archival` processes share the stream; the
// first is SIGKILLed while the load runs. Its shards must move to the others within about the
// failover time, and every record must still be archived exactly once, one FIRING per incident.
func TestTakeover(t *testing.T) {
	e := setup(t)
	s := newScenario(t, e, 6)
	group := s.name + "-archival"
	args := []string{"--stages", "alerting,archival"}
	first := s.start(t, args...)
	waitFor(t, time.Minute, "the first process owns every shard", func() (bool, string) {
		o := s.owners(t, group)
		return len(o) == 4 && len(distinct(o)) == 1 && distinct(o)[0] != "", fmt.Sprint(o)
	})
	victim := distinct(s.owners(t, group))[0]
	others := []*proc{s.start(t, args...), s.start(t, args...)}
	waitFor(t, time.Minute, "the shards are shared by the three processes", func() (bool, string) {
		o := s.owners(t, group)
		return len(distinct(o)) == 3 && !slices.Contains(distinct(o), ""), fmt.Sprint(o)
	})

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	loaded := make(chan map[string]sent, 1)
	go func() { loaded <- s.load(ctx, t, 40, 300*time.Millisecond) }()
	time.Sleep(5 * time.Second) // in the hot spell
	killed := time.Now()
	s.kills = append(s.kills, killed.UTC())
	first.stop(syscall.SIGKILL)
	var takeover time.Duration
	waitForEvery(t, time.Minute, 100*time.Millisecond, "the dead process's archival shards are taken over", func() (bool, string) {
		o := s.owners(t, group)
		for _, owner := range o {
			if owner == victim || owner == "" {
				return false, fmt.Sprint(o)
			}
		}
		takeover = time.Since(killed)
		return true, ""
	})
	t.Logf("archival shards taken over %s after the SIGKILL (failover_time 3s)", takeover.Round(100*time.Millisecond))
	// A liveness bound, not a speed target: expiry is seen within failover_time (3 s) plus one take
	// interval (1.5 s); the slack covers a loaded machine. A consumer that never noticed the dead
	// owner, or only after a restart of its own, would miss it by far.
	if limit := 2*3*time.Second + 5*time.Second; takeover > limit {
		t.Errorf("shards taken over %s after the SIGKILL, more than %s with failover_time 3s", takeover.Round(100*time.Millisecond), limit)
	}
	recs := <-loaded

	firing, resolved := map[string]int{}, map[string]int{}
	waitFor(t, 3*time.Minute, "drained", func() (bool, string) {
		for _, p := range others {
			if p.exited() {
				t.Fatalf("thingpipe run exited: %s", p.tail())
			}
		}
		ok, summary := s.checkArchive(t, recs)
		s.drainInbox(t, firing, resolved)
		return ok && len(firing) == len(s.devices) && len(resolved) == len(s.devices),
			fmt.Sprintf("archive: %s; FIRING emails for %d devices, RESOLVED for %d", summary, len(firing), len(resolved))
	})
	time.Sleep(6 * time.Second)
	s.drainInbox(t, firing, resolved)
	for _, p := range others {
		p.stop(syscall.SIGTERM)
	}
	if ok, summary := s.checkArchive(t, recs); !ok || !archivedOnce(summary) {
		t.Errorf("archive: %s", summary)
	} else {
		t.Logf("archive: %s; %d batches found already in S3 after a kill", summary, s.retries(t))
	}
	s.checkEmails(t, firing, resolved)
	s.checkNoDeadLetters(t)
}
