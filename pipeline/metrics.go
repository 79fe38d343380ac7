package pipeline

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds thingpipe's Prometheus collectors in a registry of its own (no global registry, so
// tests and several pipelines in one process never collide).
//
// For every stage, once a message has been handled: received = acked + nacked + dead_lettered. A
// dead-lettered message is acked on its source too, but is counted only as dead_lettered.
type Metrics struct {
	reg *prometheus.Registry

	received     *prometheus.CounterVec
	acked        *prometheus.CounterVec
	nacked       *prometheus.CounterVec
	deadLettered *prometheus.CounterVec
	retries      *prometheus.CounterVec
	inFlight     *prometheus.GaugeVec
	duration     *prometheus.HistogramVec
	stageUp      *prometheus.GaugeVec

	kinesisLag  *prometheus.GaugeVec
	sqsInFlight *prometheus.GaugeVec
	awsErrors   *prometheus.CounterVec
}

// Outcomes of one delivery: labels of the handler duration histogram, and what Options.OnOutcome is
// told.
const (
	OutcomeAcked        = "acked"
	OutcomeNacked       = "nacked"
	OutcomeDeadLettered = "dead_lettered"

	outcomeAcked        = OutcomeAcked
	outcomeNacked       = OutcomeNacked
	outcomeDeadLettered = OutcomeDeadLettered
)

// NewMetrics creates the collectors and registers them, with the Go runtime and process collectors,
// in a new registry.
func NewMetrics() *Metrics {
	stage := []string{"stage"}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "thingpipe_messages_received_total",
			Help: "Messages delivered to a stage's handler chain.",
		}, stage),
		acked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "thingpipe_messages_acked_total",
			Help: "Messages handled successfully and acked on their source.",
		}, stage),
		nacked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "thingpipe_messages_nacked_total",
			Help: "Messages handed back to their source for redelivery (transient failure, shutdown, dead-letter publish failure).",
		}, stage),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "thingpipe_messages_dead_lettered_total",
			Help: "Messages published to the stage's dead-letter queue (then acked on their source), by reason kind.",
		}, []string{"stage", "kind"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "thingpipe_handler_retries_total",
			Help: "In-process handler retries after a transient error.",
		}, stage),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "thingpipe_messages_in_flight",
			Help: "Messages currently in a stage's handler chain.",
		}, stage),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "thingpipe_handler_duration_seconds",
			Help:    "Time from delivery to outcome, including retries, by outcome.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"stage", "outcome"}),
		stageUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "thingpipe_stage_up",
			Help: "1 while a stage's router is running.",
		}, stage),
		kinesisLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "thingpipe_kinesis_lag_seconds",
			Help: "How far a consumer group's reader is behind the tip of a shard (MillisBehindLatest), per shard leased by this process.",
		}, []string{"group", "shard"}),
		sqsInFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "thingpipe_sqs_in_flight_messages",
			Help: "SQS messages received by this process and not yet deleted or released.",
		}, []string{"queue"}),
		awsErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "thingpipe_dependency_errors_total",
			Help: "Errors reported against a dependency (AWS service failures, unreachable endpoints).",
		}, []string{"component"}),
	}
	m.reg.MustRegister(
		m.received, m.acked, m.nacked, m.deadLettered, m.retries, m.inFlight, m.duration, m.stageUp,
		m.kinesisLag, m.sqsInFlight, m.awsErrors,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// Registry is the registry the metrics live in, for registering more collectors or reading values
// in tests.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// SetKinesisLag records how far behind the tip of a shard a consumer group is. The Kinesis
// Subscriber's lag callback calls it after every GetRecords.
func (m *Metrics) SetKinesisLag(group, shardID string, behind time.Duration) {
	m.kinesisLag.WithLabelValues(group, shardID).Set(behind.Seconds())
}

// DeleteKinesisLag forgets a shard's lag, for when this process loses or ends its lease (otherwise a
// stale value would stay exported).
func (m *Metrics) DeleteKinesisLag(group, shardID string) {
	m.kinesisLag.DeleteLabelValues(group, shardID)
}

// SetSQSInFlight records how many messages from queue this process holds (received, not yet deleted
// or released). The SQS Subscriber's callback calls it.
func (m *Metrics) SetSQSInFlight(queue string, n int) {
	m.sqsInFlight.WithLabelValues(queue).Set(float64(n))
}

func (m *Metrics) initStage(stage string) {
	// Touch every per-stage series so dashboards see zeros rather than absent series.
	m.received.WithLabelValues(stage)
	m.acked.WithLabelValues(stage)
	m.nacked.WithLabelValues(stage)
	m.retries.WithLabelValues(stage)
	m.inFlight.WithLabelValues(stage)
	m.stageUp.WithLabelValues(stage)
}

func (m *Metrics) setStageUp(stage string, up bool) {
	v := 0.0
	if up {
		v = 1
	}
	m.stageUp.WithLabelValues(stage).Set(v)
}
