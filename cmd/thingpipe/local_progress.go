package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/thingpipe/thingpipe/pipeline"
	"github.com/thingpipe/thingpipe/simulator"
)

// stageCounts is what the progress display shows of one stage.
type stageCounts struct{ received, done, deadLettered, nacked float64 }

// progress is one reading of everything `thingpipe local` reports.
type progress struct {
	published int64 // by the simulator
	routed    int64 // messages the rules bridge routed
	unrouted  int64
	failed    int64 // rule actions that failed
	// unevaluated counts rules that could not evaluate a message (e.g. not JSON); nothing ran for them
	unevaluated int64
	stages      map[string]stageCounts
	alerts      int64 // alert emails in the local inbox
	archived    int64 // S3 objects written
}

func (s *localStack) read(ctx context.Context, sim *simulator.Simulator) progress {
	p := progress{
		routed: s.routed.Load(), unrouted: s.unrouted.Load(), failed: s.failed.Load(), unevaluated: s.unevaluated.Load(),
		stages:   stageMetrics(s.metrics),
		archived: s.calls.Get("S3", "PutObject"),
	}
	if n, err := s.inbox.count(ctx); err == nil {
		p.alerts = n
	}
	if sim != nil {
		st := sim.Stats()
		p.published = st.Registry + st.Telemetry + st.Bind
	}
	return p
}

// stageMetrics reads the per-stage counters back from the pipeline's Prometheus registry, so the
// display shows exactly what /metrics reports.
func stageMetrics(m *pipeline.Metrics) map[string]stageCounts {
	out := map[string]stageCounts{}
	families, err := m.Registry().Gather()
	if err != nil {
		return out
	}
	for _, fam := range families {
		for _, metric := range fam.GetMetric() {
			stage := label(metric, "stage")
			if stage == "" {
				continue
			}
			c := out[stage]
			v := metric.GetCounter().GetValue()
			switch fam.GetName() {
			case "thingpipe_messages_received_total":
				c.received = v
			case "thingpipe_messages_acked_total":
				c.done = v
			case "thingpipe_messages_dead_lettered_total":
				c.deadLettered = v
			case "thingpipe_messages_nacked_total":
				c.nacked = v
			default:
				continue
			}
			out[stage] = c
		}
	}
	return out
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func (p progress) lines(elapsed time.Duration) []string {
	lines := []string{
		fmt.Sprintf("thingpipe local  %s  published %d  routed %d  unrouted %d  rule action failures %d  not evaluated %d",
			elapsed.Truncate(time.Second), p.published, p.routed, p.unrouted, p.failed, p.unevaluated),
	}
	for _, name := range pipeline.AllStages() {
		c := p.stages[name]
		lines = append(lines, fmt.Sprintf("  %-13s received %6.0f  done %6.0f  retried %4.0f  dead-lettered %4.0f",
			name, c.received, c.done, c.nacked, c.deadLettered))
	}
	lines = append(lines, fmt.Sprintf("  alert emails %d   archive objects written %d", p.alerts, p.archived))
	return lines
}

// showProgress reports until ctx ends: redrawn in place on a terminal, as plain lines otherwise.
func (s *localStack) showProgress(ctx context.Context, w io.Writer, every time.Duration, sim *simulator.Simulator, started time.Time) {
	tty := isTerminal(w)
	tick := time.NewTicker(every)
	defer tick.Stop()
	drawn := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		lines := s.read(ctx, sim).lines(time.Since(started))
		if tty {
			if drawn > 0 {
				fmt.Fprintf(w, "\x1b[%dA", drawn) // back up over the last drawing
			}
			for _, l := range lines {
				fmt.Fprintf(w, "\x1b[2K%s\n", l)
			}
			drawn = len(lines)
		} else {
			fmt.Fprintln(w, strings.Join(lines, " |"))
		}
	}
}

func (s *localStack) writeSummary(ctx context.Context, w io.Writer, sim *simulator.Simulator, elapsed time.Duration) {
	fmt.Fprintln(w, "\nSummary")
	for _, l := range s.read(ctx, sim).lines(elapsed) {
		fmt.Fprintln(w, l)
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
