package main

import (
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/thingpipe/thingpipe/broker"
	"github.com/thingpipe/thingpipe/pipeline"
)

// Message kinds as the bench counts them at the broker.
const (
	kindTelemetry = "telemetry"
	kindRegistry  = "registry"
	kindPresence  = "presence"
	kindBind      = "bind"
	kindOther     = "other"
)

// topicKind classifies an MQTT topic by the default rule set's topics.
func topicKind(topic string) string {
	parts := strings.Split(topic, "/")
	switch {
	case len(parts) == 3 && parts[0] == "dt" && parts[2] == "telemetry":
		return kindTelemetry
	case len(parts) == 5 && parts[0] == "$aws" && parts[1] == "events" && parts[2] == "thing" && parts[4] == "created":
		return kindRegistry
	case len(parts) == 5 && parts[0] == "$aws" && parts[1] == "events" && parts[2] == "presence" && parts[3] == "connected":
		return kindPresence
	case len(parts) == 3 && parts[0] == "app" && parts[2] == "bind":
		return kindBind
	}
	return kindOther
}

// stageInputs says which routed kinds feed each stage.
var stageInputs = map[string][]string{
	pipeline.StageProvisioning: {kindRegistry, kindPresence},
	pipeline.StageBinding:      {kindBind},
	pipeline.StageAlerting:     {kindTelemetry},
	pipeline.StageArchival:     {kindTelemetry},
}

// benchRecorder watches the stack through localHooks: what the rules bridge routed, and when each
// stage finished each message. It is safe for concurrent use.
type benchRecorder struct {
	now func() time.Time

	mu       sync.Mutex
	routed   map[string]int64     // by kind, messages that matched a rule
	unrouted map[string]int64     // by kind, messages that matched none
	bindSeen map[string]time.Time // requestId → broker receive time (bind requests carry no timestamp)
	stages   map[string]*stageRecord
}

// stageRecord is one stage's view: each message (by UUID) counts once, at its final outcome.
type stageRecord struct {
	finished     map[string]bool // UUID → done or dead-lettered
	done         int64
	deadLettered int64
	nacked       int64           // deliveries handed back (the message comes again)
	latencies    []time.Duration // publish → done, first completion of each message
	noStamp      int64           // done messages without a usable publish time
}

func newBenchRecorder() *benchRecorder {
	r := &benchRecorder{
		now:      time.Now,
		routed:   map[string]int64{},
		unrouted: map[string]int64{},
		bindSeen: map[string]time.Time{},
		stages:   map[string]*stageRecord{},
	}
	for _, s := range pipeline.AllStages() {
		r.stages[s] = &stageRecord{finished: map[string]bool{}}
	}
	return r
}

func (r *benchRecorder) hooks() localHooks {
	return localHooks{onRoute: r.route, onOutcome: r.outcome}
}

func (r *benchRecorder) route(m broker.Message, routed bool) {
	kind := topicKind(m.Topic)
	var requestID string
	if kind == kindBind {
		var req struct {
			RequestID string `json:"requestId"`
		}
		_ = json.Unmarshal(m.Payload, &req)
		requestID = req.RequestID
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !routed {
		r.unrouted[kind]++
		return
	}
	r.routed[kind]++
	if requestID != "" {
		if _, ok := r.bindSeen[requestID]; !ok {
			r.bindSeen[requestID] = m.Time
		}
	}
}

// stamps are the publish times a stage's payload may carry: telemetry's ts, AWS events' timestamp
// (both ms since the epoch), and a bind request's requestId.
type stamps struct {
	TS        int64  `json:"ts"`
	Timestamp int64  `json:"timestamp"`
	RequestID string `json:"requestId"`
}

func (r *benchRecorder) outcome(stage string, msg *message.Message, outcome string) {
	now := r.now()
	var published time.Time
	if outcome == pipeline.OutcomeAcked {
		var st stamps
		_ = json.Unmarshal(msg.Payload, &st)
		switch {
		case st.TS > 0:
			published = time.UnixMilli(st.TS)
		case st.Timestamp > 0:
			published = time.UnixMilli(st.Timestamp)
		case st.RequestID != "":
			r.mu.Lock()
			published = r.bindSeen[st.RequestID]
			r.mu.Unlock()
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, ok := r.stages[stage]
	if !ok {
		rec = &stageRecord{finished: map[string]bool{}}
		r.stages[stage] = rec
	}
	if outcome == pipeline.OutcomeNacked {
		rec.nacked++
		return
	}
	if rec.finished[msg.UUID] {
		return // a redelivery of a message already finished: counted once
	}
	rec.finished[msg.UUID] = true
	if outcome == pipeline.OutcomeDeadLettered {
		rec.deadLettered++
		return
	}
	rec.done++
	if published.IsZero() {
		rec.noStamp++
		return
	}
	rec.latencies = append(rec.latencies, max(now.Sub(published), 0))
}

// benchCounts is one reading of the recorder.
type benchCounts struct {
	routed, unrouted map[string]int64
	stages           map[string]stageCounts // received unused here: done, deadLettered, nacked
}

func (r *benchRecorder) counts() benchCounts {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := benchCounts{routed: map[string]int64{}, unrouted: map[string]int64{}, stages: map[string]stageCounts{}}
	for k, v := range r.routed {
		c.routed[k] = v
	}
	for k, v := range r.unrouted {
		c.unrouted[k] = v
	}
	for s, rec := range r.stages {
		c.stages[s] = stageCounts{done: float64(rec.done), deadLettered: float64(rec.deadLettered), nacked: float64(rec.nacked)}
	}
	return c
}

// pending is how many routed messages each stage has not finished yet (0 when drained).
func (c benchCounts) pending() map[string]int64 {
	out := map[string]int64{}
	for stage, kinds := range stageInputs {
		var want int64
		for _, k := range kinds {
			want += c.routed[k]
		}
		st := c.stages[stage]
		out[stage] = max(want-int64(st.done+st.deadLettered), 0)
	}
	return out
}

// latency returns a stage's publish-to-done percentiles.
func (r *benchRecorder) latency(stage string) latencyReport {
	r.mu.Lock()
	rec := r.stages[stage]
	var ds []time.Duration
	var noStamp int64
	if rec != nil {
		ds = slices.Clone(rec.latencies)
		noStamp = rec.noStamp
	}
	r.mu.Unlock()
	slices.Sort(ds)
	return latencyReport{
		Count: len(ds), Unstamped: noStamp,
		P50: millis(percentile(ds, 0.50)), P95: millis(percentile(ds, 0.95)), P99: millis(percentile(ds, 0.99)),
		Max: millis(percentile(ds, 1)),
	}
}

// percentile is the nearest-rank percentile of sorted ds (0 for none).
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
