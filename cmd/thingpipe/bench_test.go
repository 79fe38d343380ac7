package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/go-cmp/cmp"

	"github.com/thingpipe/thingpipe/broker"
	"github.com/thingpipe/thingpipe/internal/apicalls"
	"github.com/thingpipe/thingpipe/pipeline"
	"github.com/thingpipe/thingpipe/simulator"
)

// TestBenchTinyLoad runs `thingpipe bench` for a few seconds against a moto of its own and checks the
// report: nothing lost, nothing duplicated, and every field the JSON report promises.
func TestBenchTinyLoad(t *testing.T) {
	srv := startMoto(t)

	reportPath := filepath.Join(t.TempDir(), "bench.json")
	var stdout, stderr lockedBuffer
	r, err := runBench(t.Context(), &stdout, &stderr, benchFlags{
		local: localFlags{
			awsEndpoint: srv.Endpoint, mqttAddr: "127.0.0.1:0", httpAddr: "127.0.0.1:0",
			rulesDir: "../../deploy/rules", devices: 3, rate: 3, duration: 4 * time.Second, seed: 7,
			progress: 2 * time.Second,
		},
		drainTimeout: 90 * time.Second,
		report:       reportPath,
	})
	if err != nil {
		t.Fatalf("bench: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	if !r.Drained || r.Lost.Total != 0 || r.Duplicates.Total != 0 {
		t.Errorf("drained %v, lost %+v, duplicates %+v; want drained, 0 and 0\n%s", r.Drained, r.Lost, r.Duplicates, stdout.String())
	}
	if r.Published[kindTelemetry] == 0 || r.Published[kindRegistry] != 3 {
		t.Errorf("published %v: want 3 registry events and some telemetry", r.Published)
	}
	if got, want := int64(r.Outcomes.ArchivedRecords), r.Published[kindTelemetry]; got != want {
		t.Errorf("%d records archived, %d published", got, want)
	}
	if r.Outcomes.ActiveDevices != 3 {
		t.Errorf("%d devices ACTIVE, want 3", r.Outcomes.ActiveDevices)
	}
	// Every telemetry message is one Kinesis record put by the rules bridge: a stable count.
	var puts int64
	for _, c := range r.APICalls.ByCall {
		if c.Service == "Kinesis" && strings.HasPrefix(c.Operation, "PutRecord") {
			puts += c.Calls
		}
	}
	if puts < r.Published[kindTelemetry] {
		t.Errorf("%d Kinesis puts for %d telemetry messages", puts, r.Published[kindTelemetry])
	}
	for _, s := range []string{pipeline.StageAlerting, pipeline.StageArchival} {
		if l := r.Stages[s].LatencyMS; int64(l.Count) != r.Published[kindTelemetry] || l.P50 <= 0 || l.P50 > l.P95 || l.P95 > l.P99 {
			t.Errorf("%s latency %+v: want one sample per telemetry message, 0 < p50 <= p95 <= p99", s, l)
		}
	}
	for _, want := range []string{"| stage ", "| archival ", "**lost**", "CPU per 1,000 messages", "moto"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, stdout.String())
		}
	}

	data, err := os.ReadFile(reportPath)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("report is not JSON: %v", err)
	}
	for _, path := range []string{
		"config.devices", "published.telemetry", "published.registry", "published.bind", "routed.telemetry",
		"stages.provisioning.done", "stages.binding.dead_lettered", "stages.alerting.latency_ms.p99",
		"stages.archival.latency_ms.p50", "lost.total", "lost.telemetry", "duplicates.total",
		"duplicates.firing_emails", "duplicates.device_activated", "duplicates.archive_lines",
		"process.cpu_seconds_per_1000_msgs", "process.peak_rss_mib", "process.heap_inuse_mib",
		"api_calls.per_1000_msgs", "api_calls.by_operation", "notes",
	} {
		if _, ok := lookup(doc, path); !ok {
			t.Errorf("report has no %s", path)
		}
	}
	if v, _ := lookup(doc, "lost.total"); v != 0.0 {
		t.Errorf("report lost.total = %v", v)
	}
}

func lookup(doc map[string]any, path string) (any, bool) {
	var cur any = doc
	for _, k := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[k]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// TestBenchAccounting checks that losses and duplicates found in what is read back are reported,
// and that the command then fails.
func TestBenchAccounting(t *testing.T) {
	pub := simulator.Stats{Registry: 4, Telemetry: 100, Bind: 2, Connected: 4}
	tests := []struct {
		name    string
		archive archiveTally
		devices fleetTally
		mail    mailTally
		lost    benchLost
		dupes   benchDuplicates
	}{
		{
			name:    "everything accounted for",
			archive: archiveTally{Lines: 100, Records: 100},
			devices: fleetTally{Active: 4, Bindings: 2},
			mail:    mailTally{FiringEmails: 3, Incidents: 3, Activated: 4},
		},
		{
			name:    "records missing from the archive, a device not active, a binding missing",
			archive: archiveTally{Lines: 97, Records: 97},
			devices: fleetTally{Active: 3, Bindings: 1},
			lost:    benchLost{Telemetry: 3, Provisioning: 1, Binding: 1, Total: 5},
		},
		{
			name:    "an archive line twice, a second FIRING email, a second device.activated",
			archive: archiveTally{Lines: 101, Records: 100, Duplicates: 1},
			devices: fleetTally{Active: 4, Bindings: 2},
			mail:    mailTally{FiringEmails: 4, Incidents: 3, DuplicateFiring: 1, Activated: 5, DuplicateActivated: 1},
			dupes:   benchDuplicates{ArchiveLines: 1, FiringEmails: 1, DeviceActivated: 1, Total: 3},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := buildReport(reportInputs{
				flags: benchFlags{drainTimeout: time.Minute}, load: 10 * time.Second, drained: true, pub: pub,
				counts: newBenchRecorder().counts(), rec: newBenchRecorder(), archive: tc.archive, devices: tc.devices, mail: tc.mail,
				cpu: 2 * time.Second, calls: []apicalls.Count{{Key: apicalls.Key{Service: "SQS", Operation: "ReceiveMessage"}, Calls: 53}},
			})
			if diff := cmp.Diff(tc.lost, r.Lost); diff != "" {
				t.Errorf("lost (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.dupes, r.Duplicates); diff != "" {
				t.Errorf("duplicates (-want +got):\n%s", diff)
			}
			if r.Process.CPUSecondsPer1000 != 18.868 || r.APICalls.Per1000 != 500 { // 106 messages
				t.Errorf("per 1,000 messages: CPU %v s, API calls %v; want 18.868 and 500", r.Process.CPUSecondsPer1000, r.APICalls.Per1000)
			}
		})
	}
}

func TestBenchRecorder(t *testing.T) {
	rec := newBenchRecorder()
	t0 := time.UnixMilli(1795441762000)
	rec.now = func() time.Time { return t0.Add(1500 * time.Millisecond) }
	rec.route(broker.Message{Topic: "dt/sim-1/telemetry", Time: t0}, true)
	rec.route(broker.Message{Topic: "app/user-1/bind", Payload: []byte(`{"requestId":"r1","thingName":"sim-1"}`), Time: t0.Add(time.Second)}, true)
	rec.route(broker.Message{Topic: "$aws/events/presence/disconnected/sim-1"}, false)

	tel := message.NewMessage("k-1", []byte(`{"temperature":20,"ts":1795441762000,"thingName":"sim-1"}`))
	rec.outcome(pipeline.StageArchival, tel, pipeline.OutcomeNacked)
	rec.outcome(pipeline.StageArchival, tel, pipeline.OutcomeAcked)
	rec.outcome(pipeline.StageArchival, tel, pipeline.OutcomeAcked) // redelivered after the ack: counted once
	rec.outcome(pipeline.StageBinding, message.NewMessage("s-1", []byte(`{"requestId":"r1","thingName":"sim-1","userId":"user-1"}`)), pipeline.OutcomeAcked)

	c := rec.counts()
	if got := c.pending(); got[pipeline.StageArchival] != 0 || got[pipeline.StageAlerting] != 1 || got[pipeline.StageBinding] != 0 {
		t.Errorf("pending %v: want alerting 1, archival and binding 0", got)
	}
	if st := c.stages[pipeline.StageArchival]; st.done != 1 || st.nacked != 1 {
		t.Errorf("archival %+v: want 1 done, 1 nacked", st)
	}
	if l := rec.latency(pipeline.StageArchival); l.Count != 1 || l.P50 != 1500 {
		t.Errorf("archival latency %+v: want one sample of 1500 ms (from the payload's ts)", l)
	}
	if l := rec.latency(pipeline.StageBinding); l.Count != 1 || l.P50 != 500 {
		t.Errorf("binding latency %+v: want one sample of 500 ms (from the broker's receive time)", l)
	}
	if isDrained(c, simulator.Stats{Telemetry: 1, Bind: 1}) {
		t.Error("drained with alerting still pending")
	}
	rec.outcome(pipeline.StageAlerting, tel, pipeline.OutcomeDeadLettered)
	if !isDrained(rec.counts(), simulator.Stats{Telemetry: 1, Bind: 1}) {
		t.Error("not drained once every stage finished every routed message")
	}
	if isDrained(rec.counts(), simulator.Stats{Telemetry: 2, Bind: 1}) {
		t.Error("drained although the bridge has not routed every published message")
	}
}

func TestTopicKindAndPercentile(t *testing.T) {
	for topic, want := range map[string]string{
		"dt/dev-1/telemetry":                  kindTelemetry,
		"dt/site/dev-1/telemetry":             kindOther,
		"$aws/events/thing/dev-1/created":     kindRegistry,
		"$aws/events/presence/connected/d":    kindPresence,
		"$aws/events/presence/disconnected/d": kindOther,
		"app/user-1/bind":                     kindBind,
	} {
		if got := topicKind(topic); got != want {
			t.Errorf("topicKind(%q) = %q, want %q", topic, got, want)
		}
	}
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	for p, want := range map[float64]time.Duration{0.5: 50 * time.Millisecond, 0.95: 95 * time.Millisecond, 0.99: 99 * time.Millisecond, 1: 100 * time.Millisecond} {
		if got := percentile(ds, p); got != want {
			t.Errorf("p%v = %v, want %v", p*100, got, want)
		}
	}
	if percentile(nil, 0.5) != 0 {
		t.Error("percentile of nothing is not 0")
	}
}

func TestMailboxCountsDuplicates(t *testing.T) {
	m := &mailbox{firing: map[string]int{}, activated: map[string]int{}, activatedIDs: map[string]int{}, otherEvents: map[string]int{}}
	firing := func(incident string) snsEnvelope {
		return snsEnvelope{Subject: "[CRITICAL] temperature 93.1 > 80 on dev-1", Message: "CRITICAL: overheating on dev-1\n\n  Incident:    " + incident + "\n",
			MessageAttributes: map[string]struct{ Value string }{"status": {Value: "FIRING"}}}
	}
	m.email(firing("inc-1"))
	m.email(firing("inc-1"))
	m.email(firing("inc-2"))
	m.email(snsEnvelope{Subject: "[RESOLVED] temperature 70 < 75 on dev-1"})
	activated := func(thing string) snsEnvelope {
		b, _ := json.Marshal(map[string]any{"type": "device.activated", "id": "ev-" + thing, "thingName": thing, "data": map[string]any{}})
		return snsEnvelope{Message: string(b)}
	}
	m.event(activated("dev-1"))
	m.event(activated("dev-1"))
	m.event(activated("dev-2"))
	m.event(snsEnvelope{Message: `{"type":"binding.completed","thingName":"dev-1","data":{}}`})
	want := mailTally{FiringEmails: 3, Incidents: 2, DuplicateFiring: 1, ResolvedEmails: 1,
		Activated: 3, ActivatedThings: 2, DuplicateActivated: 1, OtherEvents: map[string]int{"binding.completed": 1}}
	if diff := cmp.Diff(want, m.tally()); diff != "" {
		t.Errorf("tally (-want +got):\n%s", diff)
	}
}

func TestBenchFlagsAreValidated(t *testing.T) {
	ok := benchFlags{local: localFlags{devices: 1, rate: 1, duration: time.Second, progress: time.Second}, drainTimeout: time.Second}
	for name, edit := range map[string]func(*benchFlags){
		"--devices":       func(f *benchFlags) { f.local.devices = 0 },
		"--rate":          func(f *benchFlags) { f.local.rate = 0 },
		"--duration":      func(f *benchFlags) { f.local.duration = 0 },
		"--drain-timeout": func(f *benchFlags) { f.drainTimeout = -time.Second },
	} {
		f := ok
		edit(&f)
		_, err := runBench(t.Context(), &bytes.Buffer{}, &bytes.Buffer{}, f)
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != 2 || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: err = %v, want exit code 2 naming the flag", name, err)
		}
	}
}

// The profiles are written where --cpuprofile and --memprofile say; a path that cannot be created is an
// error naming the flag, and stopping the CPU profile twice is harmless.
func TestBenchProfiles(t *testing.T) {
	dir := t.TempDir()
	cpu, mem := filepath.Join(dir, "cpu.prof"), filepath.Join(dir, "mem.prof")
	stop, err := startCPUProfile(cpu)
	if err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	if err := writeHeapProfile(mem); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{cpu, mem} {
		if fi, err := os.Stat(p); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v, %v", p, fi, err)
		}
	}
	missing := filepath.Join(dir, "no", "such", "dir", "x.prof")
	if _, err := startCPUProfile(missing); err == nil || !strings.Contains(err.Error(), "--cpuprofile") {
		t.Errorf("startCPUProfile(%s) = %v", missing, err)
	}
	if err := writeHeapProfile(missing); err == nil || !strings.Contains(err.Error(), "--memprofile") {
		t.Errorf("writeHeapProfile(%s) = %v", missing, err)
	}
	// A second CPU profile cannot start while one runs: the error is the start's, and the file is closed.
	stop, err = startCPUProfile(cpu)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stop() }()
	if _, err := startCPUProfile(filepath.Join(dir, "second.prof")); err == nil || !strings.Contains(err.Error(), "--cpuprofile") {
		t.Errorf("second startCPUProfile = %v", err)
	}
}
