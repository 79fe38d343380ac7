package main

import (
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/thingpipe/thingpipe/internal/apicalls"
	"github.com/thingpipe/thingpipe/pipeline"
	"github.com/thingpipe/thingpipe/simulator"
)

// benchReport is what thingpipe bench prints, and writes with --report as JSON.
type benchReport struct {
	Config       benchConfig `json:"config"`
	LoadSeconds  float64     `json:"load_seconds"`
	DrainSeconds float64     `json:"drain_seconds"`
	Drained      bool        `json:"drained"` // every routed message finished within the drain timeout

	// Published counts what the simulator published (acknowledged by the broker), by kind.
	Published     map[string]int64 `json:"published"` // registry, telemetry, bind, total
	PublishErrors int64            `json:"publish_errors"`
	// Routed counts messages the rules bridge routed, by kind (presence: the broker's connect events).
	Routed     map[string]int64      `json:"routed"`
	Unrouted   int64                 `json:"unrouted"` // e.g. disconnect events, which no default rule matches
	Stages     map[string]benchStage `json:"stages"`
	Outcomes   benchOutcomes         `json:"outcomes"`
	Lost       benchLost             `json:"lost"`
	Duplicates benchDuplicates       `json:"duplicates"`
	Process    benchProcess          `json:"process"`
	APICalls   benchAPICalls         `json:"api_calls"`
	Notes      []string              `json:"notes"`
}

type benchConfig struct {
	Devices      int     `json:"devices"`
	Rate         float64 `json:"rate_msgs_per_s"`
	Duration     string  `json:"duration"`
	DrainTimeout string  `json:"drain_timeout"`
	Seed         uint64  `json:"seed"`
	Endpoint     string  `json:"aws_endpoint"`
	CPUs         int     `json:"cpus"`
	GoVersion    string  `json:"go_version"`
}

type benchStage struct {
	Done         int64         `json:"done"`
	DeadLettered int64         `json:"dead_lettered"`
	Nacked       int64         `json:"nacked"`  // deliveries handed back to be redelivered
	Pending      int64         `json:"pending"` // routed but not finished when measured
	LatencyMS    latencyReport `json:"latency_ms"`
}

// latencyReport is publish-to-done latency in milliseconds. Publish time: telemetry's ts, the AWS
// event's timestamp, or (bind requests) when the broker received it; done: when the stage acked it.
type latencyReport struct {
	Count     int     `json:"count"`
	Unstamped int64   `json:"unstamped"` // done messages without a publish time
	P50       float64 `json:"p50"`
	P95       float64 `json:"p95"`
	P99       float64 `json:"p99"`
	Max       float64 `json:"max"`
}

// benchOutcomes is what was read back from AWS after the run.
type benchOutcomes struct {
	ArchiveObjects  int            `json:"archive_objects"`
	ArchiveLines    int            `json:"archive_lines"`
	ArchivedRecords int            `json:"archived_records"` // unique (thingName, ts)
	ExpectedActive  int64          `json:"expected_active"`
	ActiveDevices   int            `json:"active_devices"`
	Bindings        int            `json:"bindings"`
	WrongUser       int            `json:"bindings_to_wrong_user"`
	FiringEmails    int            `json:"firing_emails"`
	Incidents       int            `json:"incidents"`
	ResolvedEmails  int            `json:"resolved_emails"`
	DeviceActivated int            `json:"device_activated_events"`
	OtherEvents     map[string]int `json:"other_events"`
}

type benchLost struct {
	Telemetry    int64 `json:"telemetry"`    // published, not in the archive
	Provisioning int64 `json:"provisioning"` // registered and connected, not ACTIVE
	Binding      int64 `json:"binding"`      // requested, no binding
	Total        int64 `json:"total"`
}

type benchDuplicates struct {
	ArchiveLines    int `json:"archive_lines"`    // lines repeating a (thingName, ts) already archived
	FiringEmails    int `json:"firing_emails"`    // FIRING emails beyond one per incident
	DeviceActivated int `json:"device_activated"` // device.activated beyond one per device
	Total           int `json:"total"`
}

// benchProcess is this process's cost: thingpipe's stages, the broker, the rules bridge and the
// simulator (moto is another process and not included).
type benchProcess struct {
	CPUSeconds        float64 `json:"cpu_seconds"` // user+sys during load and drain
	CPUSecondsPer1000 float64 `json:"cpu_seconds_per_1000_msgs"`
	PeakRSSMiB        float64 `json:"peak_rss_mib"`
	HeapInUseMiB      float64 `json:"heap_inuse_mib"`
	PeakHeapInUseMiB  float64 `json:"peak_heap_inuse_mib"`
	HeapSysMiB        float64 `json:"heap_sys_mib"`
	Goroutines        int     `json:"goroutines"`
	PublishedPerS     float64 `json:"published_msgs_per_s"` // achieved during the load
}

type benchAPICalls struct {
	Total   int64          `json:"total"`
	Per1000 float64        `json:"per_1000_msgs"`
	ByCall  []benchAPICall `json:"by_operation"`
}

type benchAPICall struct {
	Service   string  `json:"service"`
	Operation string  `json:"operation"`
	Calls     int64   `json:"calls"`
	Per1000   float64 `json:"per_1000_msgs"`
}

type reportInputs struct {
	flags       benchFlags
	endpoint    string
	load, drain time.Duration
	drained     bool
	pub         simulator.Stats
	counts      benchCounts
	rec         *benchRecorder
	mail        mailTally
	archive     archiveTally
	devices     fleetTally
	cpu         time.Duration
	maxRSS      int64
	mem         runtime.MemStats
	peakHeap    uint64
	calls       []apicalls.Count
}

const mib = 1 << 20

func buildReport(in reportInputs) *benchReport {
	total := in.pub.Registry + in.pub.Telemetry + in.pub.Bind
	per1000 := func(n float64) float64 {
		if total == 0 {
			return 0
		}
		return round(n * 1000 / float64(total))
	}
	r := &benchReport{
		Config: benchConfig{
			Devices: in.flags.local.devices, Rate: in.flags.local.rate, Duration: in.flags.local.duration.String(),
			DrainTimeout: in.flags.drainTimeout.String(), Seed: in.flags.local.seed, Endpoint: in.endpoint,
			CPUs: runtime.NumCPU(), GoVersion: runtime.Version(),
		},
		LoadSeconds: round(in.load.Seconds()), DrainSeconds: round(in.drain.Seconds()), Drained: in.drained,
		Published: map[string]int64{
			kindRegistry: in.pub.Registry, kindTelemetry: in.pub.Telemetry, kindBind: in.pub.Bind, "total": total,
		},
		PublishErrors: in.pub.PublishErrors,
		Routed:        in.counts.routed,
		Stages:        map[string]benchStage{},
	}
	for _, n := range in.counts.unrouted {
		r.Unrouted += n
	}
	pending := in.counts.pending()
	for _, stage := range pipeline.AllStages() {
		c := in.counts.stages[stage]
		r.Stages[stage] = benchStage{
			Done: int64(c.done), DeadLettered: int64(c.deadLettered), Nacked: int64(c.nacked),
			Pending: pending[stage], LatencyMS: in.rec.latency(stage),
		}
	}

	expectedActive := min(in.pub.Registry, in.pub.Connected)
	r.Outcomes = benchOutcomes{
		ArchiveObjects: in.archive.Objects, ArchiveLines: in.archive.Lines, ArchivedRecords: in.archive.Records,
		ExpectedActive: expectedActive, ActiveDevices: in.devices.Active, Bindings: in.devices.Bindings,
		WrongUser: in.devices.WrongUser, FiringEmails: in.mail.FiringEmails, Incidents: in.mail.Incidents,
		ResolvedEmails: in.mail.ResolvedEmails, DeviceActivated: in.mail.Activated, OtherEvents: in.mail.OtherEvents,
	}
	r.Lost = benchLost{
		Telemetry:    max(in.pub.Telemetry-int64(in.archive.Records), 0),
		Provisioning: max(expectedActive-int64(in.devices.Active), 0),
		Binding:      max(in.pub.Bind-int64(in.devices.Bindings), 0),
	}
	r.Lost.Total = r.Lost.Telemetry + r.Lost.Provisioning + r.Lost.Binding
	r.Duplicates = benchDuplicates{
		ArchiveLines: in.archive.Duplicates, FiringEmails: in.mail.DuplicateFiring, DeviceActivated: in.mail.DuplicateActivated,
	}
	r.Duplicates.Total = r.Duplicates.ArchiveLines + r.Duplicates.FiringEmails + r.Duplicates.DeviceActivated

	r.Process = benchProcess{
		CPUSeconds:        round(in.cpu.Seconds()),
		CPUSecondsPer1000: per1000(in.cpu.Seconds()),
		PeakRSSMiB:        round(float64(in.maxRSS) / mib),
		HeapInUseMiB:      round(float64(in.mem.HeapInuse) / mib),
		PeakHeapInUseMiB:  round(float64(in.peakHeap) / mib),
		HeapSysMiB:        round(float64(in.mem.HeapSys) / mib),
		Goroutines:        runtime.NumGoroutine(),
	}
	if in.load > 0 {
		r.Process.PublishedPerS = round(float64(total) / in.load.Seconds())
	}
	for _, c := range in.calls {
		r.APICalls.Total += c.Calls
		r.APICalls.ByCall = append(r.APICalls.ByCall, benchAPICall{
			Service: c.Service, Operation: c.Operation, Calls: c.Calls, Per1000: per1000(float64(c.Calls)),
		})
	}
	// Most frequent first: that is where the cost is.
	slices.SortStableFunc(r.APICalls.ByCall, func(a, b benchAPICall) int { return int(b.Calls - a.Calls) })
	r.APICalls.Per1000 = per1000(float64(r.APICalls.Total))
	r.Notes = []string{
		"The AWS emulator (moto) bounds throughput and latency here: its SQS calls slow down as queues deepen. " +
			"Read thingpipe's own costs (CPU, memory, API calls per message) next to the throughput, not the wall time.",
		"CPU and memory are this process's: the stages, the embedded MQTT broker, the rules bridge and the simulator " +
			"(the load generator). moto runs as a separate process and is not included.",
		"API calls include the background ones (SQS long polls, Kinesis GetRecords polls, lease renewals, " +
			"readiness checks, the local registry watcher), counted from the start of the load to the end of the drain.",
	}
	if !in.drained {
		r.Notes = append(r.Notes, fmt.Sprintf("Not drained within %s: counts were taken then, and the stack was stopped (flushing) before outcomes were read.", in.flags.drainTimeout))
	}
	return r
}

func round(v float64) float64 {
	if v >= 100 {
		return float64(int64(v*10+0.5)) / 10
	}
	return float64(int64(v*1000+0.5)) / 1000
}

// writeTable prints the report for a person, as Markdown tables (pasteable into docs).
func (r *benchReport) writeTable(w io.Writer) {
	c := r.Config
	fmt.Fprintf(w, "\nthingpipe bench: %d devices, %g msg/s telemetry for %s (%s; %d CPUs, %s)\n",
		c.Devices, c.Rate, c.Duration, c.Endpoint, c.CPUs, c.GoVersion)
	drained := "drained"
	if !r.Drained {
		drained = "NOT drained"
	}
	fmt.Fprintf(w, "load %.1fs, %s %.1fs after it\n\n", r.LoadSeconds, drained, r.DrainSeconds)

	t := &mdTable{}
	t.row("messages", "published", "routed by the bridge")
	for _, k := range []string{kindRegistry, kindTelemetry, kindBind} {
		t.row(k, r.Published[k], r.Routed[k])
	}
	t.row("presence (from the broker)", "-", r.Routed[kindPresence])
	t.row("total", r.Published["total"], r.Routed[kindRegistry]+r.Routed[kindTelemetry]+r.Routed[kindBind]+r.Routed[kindPresence])
	t.write(w)

	t = &mdTable{}
	t.row("stage", "done", "dead-lettered", "nacked", "pending", "p50 ms", "p95 ms", "p99 ms")
	for _, s := range pipeline.AllStages() {
		st := r.Stages[s]
		t.row(s, st.Done, st.DeadLettered, st.Nacked, st.Pending,
			fmt.Sprintf("%.0f", st.LatencyMS.P50), fmt.Sprintf("%.0f", st.LatencyMS.P95), fmt.Sprintf("%.0f", st.LatencyMS.P99))
	}
	t.write(w)

	o := r.Outcomes
	t = &mdTable{}
	t.row("read back from AWS", "found", "expected")
	t.row("telemetry records in the S3 archive (unique thing, ts)", o.ArchivedRecords, r.Published[kindTelemetry])
	t.row("devices ACTIVE in DynamoDB", o.ActiveDevices, o.ExpectedActive)
	t.row("bindings in DynamoDB", o.Bindings, r.Published[kindBind])
	t.row("FIRING emails (alert inbox) / incidents", o.FiringEmails, o.Incidents)
	t.row("device.activated events / devices", o.DeviceActivated, o.ActiveDevices)
	t.row(fmt.Sprintf("**lost** (telemetry %d, provisioning %d, binding %d)", r.Lost.Telemetry, r.Lost.Provisioning, r.Lost.Binding),
		r.Lost.Total, 0)
	t.row(fmt.Sprintf("**duplicate effects** (archive lines %d, FIRING emails %d, device.activated %d)",
		r.Duplicates.ArchiveLines, r.Duplicates.FiringEmails, r.Duplicates.DeviceActivated), r.Duplicates.Total, 0)
	t.write(w)

	p := r.Process
	t = &mdTable{}
	t.row("thingpipe process (moto not included)", "value")
	t.row("published msg/s during the load", fmt.Sprintf("%.1f", p.PublishedPerS))
	t.row("CPU user+sys, load and drain", fmt.Sprintf("%.2f s", p.CPUSeconds))
	t.row("CPU per 1,000 messages", fmt.Sprintf("%.2f s", p.CPUSecondsPer1000))
	t.row("peak RSS", fmt.Sprintf("%.0f MiB", p.PeakRSSMiB))
	t.row("Go heap in use (peak)", fmt.Sprintf("%.1f MiB (%.1f MiB)", p.HeapInUseMiB, p.PeakHeapInUseMiB))
	t.row("AWS API calls per 1,000 messages", fmt.Sprintf("%.0f", r.APICalls.Per1000))
	t.write(w)

	t = &mdTable{}
	t.row("AWS API call", "calls", "per 1,000 messages")
	for _, a := range r.APICalls.ByCall {
		t.row(a.Service+" "+a.Operation, a.Calls, fmt.Sprintf("%.1f", a.Per1000))
	}
	t.row("total", r.APICalls.Total, fmt.Sprintf("%.1f", r.APICalls.Per1000))
	t.write(w)

	for _, n := range r.Notes {
		fmt.Fprintf(w, "Note: %s\n", n)
	}
}

// mdTable is a Markdown table with aligned columns: text on the left, numbers on the right.
type mdTable struct{ rows [][]string }

func (t *mdTable) row(cells ...any) {
	r := make([]string, len(cells))
	for i, c := range cells {
		r[i] = fmt.Sprint(c)
	}
	t.rows = append(t.rows, r)
}

func (t *mdTable) write(w io.Writer) {
	if len(t.rows) == 0 {
		return
	}
	width := make([]int, len(t.rows[0]))
	for _, r := range t.rows {
		for i, c := range r {
			width[i] = max(width[i], len(c))
		}
	}
	line := func(r []string) {
		var b strings.Builder
		b.WriteString("|")
		for i, c := range r {
			if i == 0 {
				fmt.Fprintf(&b, " %-*s |", width[i], c)
			} else {
				fmt.Fprintf(&b, " %*s |", width[i], c)
			}
		}
		fmt.Fprintln(w, b.String())
	}
	line(t.rows[0])
	var sep strings.Builder
	sep.WriteString("|")
	for i, n := range width {
		if i == 0 {
			sep.WriteString(strings.Repeat("-", n+2) + "|")
		} else {
			sep.WriteString(strings.Repeat("-", n+1) + ":|")
		}
	}
	fmt.Fprintln(w, sep.String())
	for _, r := range t.rows[1:] {
		line(r)
	}
	fmt.Fprintln(w)
}
