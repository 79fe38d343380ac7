package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/spf13/cobra"

	"github.com/thingpipe/thingpipe/pipeline"
	"github.com/thingpipe/thingpipe/simulator"
)

type benchFlags struct {
	local        localFlags // the stack: endpoint, addresses, rules, config, fleet
	drainTimeout time.Duration
	report       string
	cpuProfile   string // pprof CPU profile of the load and the drain
	memProfile   string // pprof heap profile at the end of the drain
}

func newBenchCmd() *cobra.Command {
	var f benchFlags
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Load-test the whole local system and report losses, duplicates, latency and thingpipe's own costs",
		Long: `bench runs the same stack as 'thingpipe local' (moto unless --aws-endpoint, the CloudFormation stack,
the rules, the embedded MQTT broker and rules bridge, the four stages) with the simulator as load
generator for --duration, then drains: it waits until every stage has finished every message the
rules bridge routed to it, or --drain-timeout passes. Then it reads the outcomes back from AWS and
prints a table (--report also writes it as JSON):

  - messages published (registry, telemetry, bind), routed by the bridge, done and dead-lettered per stage;
  - lost: telemetry records missing from the S3 archive (read back, unique by thing and ts), devices not
    ACTIVE in DynamoDB, bindings missing; must be 0;
  - duplicate effects: archive lines repeated, more than one FIRING email per incident (seen in an SQS
    queue subscribed to the alerts topic), more than one device.activated per device; must be 0;
  - publish-to-done latency per stage (p50/p95/p99);
  - CPU seconds of this process per 1,000 messages, peak RSS, Go heap;
  - AWS API calls per 1,000 messages, by service and operation.

The emulator (moto) bounds throughput, and its SQS calls slow down as queues deepen: read the
latency and throughput as the emulator's, and thingpipe's CPU, memory and API calls per message as
thingpipe's own. This process also runs the broker, the bridge and the simulator; moto's CPU is not
included. bench exits 1 when anything was lost or duplicated.`,
		Example: `  thingpipe bench --devices 20 --rate 20 --duration 30s
  thingpipe bench --devices 100 --rate 50 --duration 2m --report bench.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := runBench(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), f)
			return err
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&f.local.devices, "devices", 20, "simulated devices")
	fl.Float64Var(&f.local.rate, "rate", 20, "telemetry messages per second, across all devices")
	fl.DurationVar(&f.local.duration, "duration", 30*time.Second, "how long the simulator publishes")
	fl.DurationVar(&f.drainTimeout, "drain-timeout", 2*time.Minute, "how long to wait, after the load, for every message to be finished")
	fl.StringVar(&f.report, "report", "", "also write the report as JSON to this file")
	fl.StringVar(&f.cpuProfile, "cpuprofile", "", "write a CPU profile of the load and the drain to this file (go tool pprof)")
	fl.StringVar(&f.memProfile, "memprofile", "", "write a heap profile taken at the end of the drain to this file (go tool pprof)")
	fl.StringVar(&f.local.awsEndpoint, "aws-endpoint", "", "AWS endpoint to use instead of starting moto's server (use a fresh one: state left by earlier runs skews the counts)")
	fl.StringVar(&f.local.mqttAddr, "mqtt-addr", "127.0.0.1:0", "address of the embedded MQTT broker")
	fl.StringVar(&f.local.httpAddr, "http-addr", "127.0.0.1:0", "address for /healthz, /readyz and /metrics")
	fl.StringVar(&f.local.rulesDir, "rules", "deploy/rules", "directory of rule files")
	fl.StringVar(&f.local.configFile, "config", "", "pipeline configuration file (YAML); default: thingpipe local's")
	fl.Uint64Var(&f.local.seed, "seed", 1, "seed of the simulated fleet")
	fl.DurationVar(&f.local.progress, "progress", 5*time.Second, "how often progress is logged")
	return cmd
}

func (f benchFlags) validate() error {
	switch {
	case f.local.devices < 1:
		return fmt.Errorf("--devices must be at least 1, got %d", f.local.devices)
	case !(f.local.rate > 0):
		return fmt.Errorf("--rate must be positive, got %v", f.local.rate)
	case f.local.duration <= 0:
		return fmt.Errorf("--duration must be positive, got %s", f.local.duration)
	case f.drainTimeout <= 0:
		return fmt.Errorf("--drain-timeout must be positive, got %s", f.drainTimeout)
	case f.local.progress <= 0:
		return fmt.Errorf("--progress must be positive, got %s", f.local.progress)
	}
	return nil
}

// runBench runs one load test and returns its report. The error is non-nil when the run could not be
// made, or when it lost or duplicated anything (then the report is printed and written first).
func runBench(ctx context.Context, stdout, stderr io.Writer, f benchFlags) (*benchReport, error) {
	if err := f.validate(); err != nil {
		return nil, withCode(2, err)
	}
	rec := newBenchRecorder()
	s, err := startLocal(ctx, stderr, f.local, rec.hooks())
	if err != nil {
		return nil, err
	}
	defer s.close()
	stopped := false
	defer func() {
		if !stopped {
			_ = s.stop()
		}
	}()

	// The bench's own reads use clients that are not instrumented (startLocal pointed the
	// environment at the endpoint).
	readCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("loading AWS configuration: %w", err)
	}
	mb, err := newMailbox(ctx, readCfg, s.inbox.url, s.outputs.EventsTopicARN)
	if err != nil {
		return nil, err
	}

	// Costs are counted from here: the stack's set-up (deploy, rules) is not per message.
	s.calls.Reset()
	stopProfile, err := startCPUProfile(f.cpuProfile)
	if err != nil {
		return nil, err
	}
	defer func() { _ = stopProfile() }() // on an early return; the result is checked below
	cpu0 := cpuTime()
	loadStart := time.Now()
	simCtx, cancelSim := context.WithTimeout(ctx, f.local.duration)
	defer cancelSim()
	sim, simDone, err := s.startSimulator(simCtx, f.local)
	if err != nil {
		return nil, err
	}
	s.log.Info("bench: load running", "devices", f.local.devices, "rate", f.local.rate, "duration", f.local.duration)

	collectCtx, stopCollect := context.WithCancel(ctx)
	var collector sync.WaitGroup
	var peakHeap heapPeak
	collector.Go(func() {
		tick := time.NewTicker(2 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-collectCtx.Done():
				return
			case <-tick.C:
			}
			peakHeap.sample()
			if err := mb.drain(collectCtx); err != nil && collectCtx.Err() == nil {
				s.log.Warn("bench: draining the alert inbox and events queue", "err", err)
			}
		}
	})
	defer func() { stopCollect(); collector.Wait() }()

	// Load, then drain.
	progress := time.NewTicker(f.local.progress)
	defer progress.Stop()
	for loading := true; loading; {
		select {
		case <-simDone:
			loading = false
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-progress.C:
			s.log.Info("bench: load", benchProgress(rec, sim)...)
		}
	}
	loadTime := time.Since(loadStart)
	pub := sim.Stats()
	if pub.Telemetry == 0 {
		return nil, fmt.Errorf("bench: the simulator published no telemetry in %s (%d connect errors, %d publish errors); nothing to measure",
			f.local.duration, pub.ConnectErrors, pub.PublishErrors)
	}
	drainStart := time.Now()
	drainDeadline := time.NewTimer(f.drainTimeout)
	defer drainDeadline.Stop()
	poll := time.NewTicker(250 * time.Millisecond)
	defer poll.Stop()
	drained := false
drain:
	for !drained {
		if drained = isDrained(rec.counts(), pub); drained {
			break
		}
		select {
		case <-poll.C:
		case <-progress.C:
			s.log.Info("bench: draining", benchProgress(rec, sim)...)
		case <-drainDeadline.C:
			s.log.Warn("bench: drain timeout: not every message was finished", benchProgress(rec, sim)...)
			break drain
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	drainTime := time.Since(drainStart)
	cpu := cpuTime() - cpu0
	if err := stopProfile(); err != nil {
		return nil, err
	}
	calls := s.calls.Snapshot()
	peakHeap.sample()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if err := writeHeapProfile(f.memProfile); err != nil { // after the reading: it collects garbage first
		return nil, err
	}

	// Stop the stack (flushing what a timed-out drain left open), then read the outcomes back.
	stopCollect()
	collector.Wait()
	stopErr := s.stop()
	stopped = true
	if stopErr != nil {
		s.log.Warn("bench: stack did not stop cleanly", "err", stopErr)
	}
	if err := mb.drain(ctx); err != nil {
		return nil, err
	}
	s3c := s3.NewFromConfig(readCfg, func(o *s3.Options) {
		o.UsePathStyle = true
		o.DisableLogOutputChecksumValidationSkipped = true // moto sends no checksums: not worth a log line per object
	})
	fleet := map[string]bool{}
	for _, d := range sim.Devices() {
		fleet[d.Name] = true
	}
	archive, err := readArchive(ctx, s3c, s.pipeCfg.Resources.ArchiveBucket, fleet)
	if err != nil {
		return nil, err
	}
	devices, err := readFleet(ctx, dynamodb.NewFromConfig(readCfg), s.pipeCfg.Resources.DevicesTable, s.pipeCfg.Resources.BindingsTable, sim.Devices())
	if err != nil {
		return nil, err
	}

	endpoint := "moto on loopback, started by thingpipe bench"
	if f.local.awsEndpoint != "" {
		endpoint = f.local.awsEndpoint
	}
	r := buildReport(reportInputs{
		flags: f, endpoint: endpoint, load: loadTime, drain: drainTime, drained: drained,
		pub: pub, counts: rec.counts(), rec: rec, mail: mb.tally(), archive: archive, devices: devices,
		cpu: cpu, maxRSS: maxRSS(), mem: ms, peakHeap: peakHeap.max(), calls: calls,
	})
	r.writeTable(stdout)
	if f.report != "" {
		data, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			return r, fmt.Errorf("encoding the report: %w", err)
		}
		if err := os.WriteFile(f.report, append(data, '\n'), 0o644); err != nil { // #nosec G306 -- a benchmark report, no secret: readable like any build output
			return r, fmt.Errorf("writing --report: %w", err)
		}
	}
	var errs []error
	if r.Lost.Total > 0 || r.Duplicates.Total > 0 {
		errs = append(errs, fmt.Errorf("bench: %d lost, %d duplicate effects (both must be 0)", r.Lost.Total, r.Duplicates.Total))
	}
	if stopErr != nil {
		errs = append(errs, stopErr)
	}
	if err := errors.Join(errs...); err != nil {
		return r, withCode(1, err)
	}
	return r, nil
}

// isDrained: the bridge routed everything the simulator published, and every stage finished every
// message routed to it.
func isDrained(c benchCounts, pub simulator.Stats) bool {
	if c.routed[kindTelemetry] < pub.Telemetry || c.routed[kindRegistry] < pub.Registry || c.routed[kindBind] < pub.Bind {
		return false
	}
	for _, n := range c.pending() {
		if n > 0 {
			return false
		}
	}
	return true
}

func benchProgress(rec *benchRecorder, sim *simulator.Simulator) []any {
	st := sim.Stats()
	c := rec.counts()
	attrs := []any{"published", st.Registry + st.Telemetry + st.Bind, "telemetry", st.Telemetry}
	for _, stage := range pipeline.AllStages() {
		attrs = append(attrs, stage+"_done", int64(c.stages[stage].done))
	}
	for stage, n := range c.pending() {
		if n > 0 {
			attrs = append(attrs, stage+"_pending", n)
		}
	}
	return attrs
}

// cpuTime is this process's user plus system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// maxRSS is this process's peak resident set size in bytes (Linux reports KiB).
func maxRSS() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return int64(ru.Maxrss) * 1024
}

// heapPeak keeps the largest in-use heap seen.
type heapPeak struct {
	mu   sync.Mutex
	peak uint64
}

func (h *heapPeak) sample() {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	h.mu.Lock()
	h.peak = max(h.peak, ms.HeapInuse)
	h.mu.Unlock()
}

func (h *heapPeak) max() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.peak
}

// startCPUProfile starts profiling into path ("" does nothing); the returned func stops it, once,
// and reports a profile that could not be written out.
func startCPUProfile(path string) (stop func() error, err error) {
	if path == "" {
		return func() error { return nil }, nil
	}
	out, err := os.Create(path) // #nosec G304 -- the --cpuprofile path the user gave
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(out); err != nil {
		return nil, errors.Join(fmt.Errorf("--cpuprofile: %w", err), out.Close())
	}
	return sync.OnceValue(func() error {
		pprof.StopCPUProfile()
		if err := out.Close(); err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		return nil
	}), nil
}

func writeHeapProfile(path string) error {
	if path == "" {
		return nil
	}
	out, err := os.Create(path) // #nosec G304 -- the --memprofile path the user gave
	if err != nil {
		return fmt.Errorf("--memprofile: %w", err)
	}
	runtime.GC() // the profile shows live objects as of the last GC
	if err := pprof.WriteHeapProfile(out); err != nil {
		return errors.Join(fmt.Errorf("--memprofile: %w", err), out.Close())
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("--memprofile: %w", err)
	}
	return nil
}
