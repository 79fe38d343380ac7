package pipeline

import (
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Stage names, as used in config, metrics labels, logs and dead-letter queue names.
const (
	StageProvisioning = "provisioning"
	StageBinding      = "binding"
	StageAlerting     = "alerting"
	StageArchival     = "archival"
)

// AllStages lists every stage in pipeline order.
func AllStages() []string {
	return []string{StageProvisioning, StageBinding, StageAlerting, StageArchival}
}

// Config is thingpipe run's configuration: one YAML file (see deploy/thingpipe.example.yaml, which
// shows every key with its default) plus THINGPIPE_* environment overrides. Keys are the json tags.
type Config struct {
	// Stages this process runs (any subset of provisioning, binding, alerting, archival).
	Stages []string `json:"stages"`
	// HTTPAddr serves /metrics, /healthz and /readyz.
	HTTPAddr string    `json:"http_addr"`
	Log      LogConfig `json:"log"`
	// ShutdownTimeout bounds graceful shutdown: finishing in-flight messages, closing subscribers
	// (SQS deletes, Kinesis checkpoints and leases) and the stages' own flushes.
	ShutdownTimeout Duration        `json:"shutdown_timeout"`
	Readiness       ReadinessConfig `json:"readiness"`
	Tracing         TracingConfig   `json:"tracing"`
	Resources       ResourcesConfig `json:"resources"`
	AWS             AWSConfig       `json:"aws"`
	SQS             SQSConfig       `json:"sqs"`
	Kinesis         KinesisConfig   `json:"kinesis"`

	Provisioning ProvisioningConfig `json:"provisioning"`
	Binding      BindingConfig      `json:"binding"`
	Alerting     AlertingConfig     `json:"alerting"`
	Archival     ArchivalConfig     `json:"archival"`
}

// LogConfig selects the slog handler.
type LogConfig struct {
	Level  string `json:"level"`  // debug, info, warn, error
	Format string `json:"format"` // json, text
}

// ReadinessConfig tunes /readyz.
type ReadinessConfig struct {
	// DegradedWindow: a component that reported an error within this window makes /readyz 503.
	DegradedWindow Duration `json:"degraded_window"`
	// CheckInterval: dependency check results are reused for this long.
	CheckInterval Duration `json:"check_interval"`
	// CheckTimeout bounds one round of dependency checks.
	CheckTimeout Duration `json:"check_timeout"`
}

// TracingConfig configures OpenTelemetry export. Trace context is propagated in message metadata
// whatever the exporter.
type TracingConfig struct {
	Exporter    string  `json:"exporter"` // none, stdout, otlp
	Endpoint    string  `json:"endpoint"` // otlp: collector URL; empty = OTEL_EXPORTER_OTLP_* environment
	SampleRatio float64 `json:"sample_ratio"`
	ServiceName string  `json:"service_name"`
}

// ResourcesConfig names the AWS resources (DESIGN.md; deploy/cloudformation creates them).
type ResourcesConfig struct {
	ProvisioningQueue string `json:"provisioning_queue"`
	BindingQueue      string `json:"binding_queue"`
	TelemetryStream   string `json:"telemetry_stream"`
	LeaseTable        string `json:"lease_table"`
	DevicesTable      string `json:"devices_table"`
	BindingsTable     string `json:"bindings_table"`
	// BindingsUserIndex is the bindings table's index on userId.
	BindingsUserIndex string `json:"bindings_user_index"`
	AlertsTable       string `json:"alerts_table"`
	// The topics take a name or an ARN (an ARN spares an sns:ListTopics lookup).
	EventsTopic   string `json:"events_topic"`
	AlertsTopic   string `json:"alerts_topic"`
	ArchiveBucket string `json:"archive_bucket"`
}

// AWSConfig tunes the AWS clients the stages use (credentials, region and endpoint come from the
// SDK's default chain, never from here).
type AWSConfig struct {
	// ResponseTimeout bounds how long one attempt of an AWS call waits for the response to start
	// once its request is sent. Without it a call on a connection that stalls (a network partition,
	// a hung load balancer) would wait forever; with it the attempt fails, the SDK retries on a new
	// connection, and /readyz reports the service. It must exceed sqs.wait_time, which a
	// ReceiveMessage long poll spends waiting before AWS answers.
	ResponseTimeout Duration `json:"response_timeout"`
}

// SQSConfig configures the SQS subscribers of the provisioning and binding stages.
type SQSConfig struct {
	// Receivers is the number of concurrent ReceiveMessage loops per stage.
	Receivers int `json:"receivers"`
	// WaitTime is the ReceiveMessage long-poll wait (0 to 20s, whole seconds).
	WaitTime Duration `json:"wait_time"`
	// VisibilityTimeout is how long a received message stays hidden while it is handled; the
	// subscriber extends it for messages held longer (whole seconds).
	VisibilityTimeout Duration `json:"visibility_timeout"`
	// A nacked message becomes visible again after nack_backoff_initial × 2^(receive count − 1),
	// at most nack_backoff_max.
	NackBackoffInitial Duration `json:"nack_backoff_initial"`
	NackBackoffMax     Duration `json:"nack_backoff_max"`
}

// KinesisConfig configures the consumer-group subscribers of the alerting and archival stages.
type KinesisConfig struct {
	AlertingGroup string `json:"alerting_group"`
	ArchivalGroup string `json:"archival_group"`
	// StartPosition for a shard without a checkpoint: TRIM_HORIZON or LATEST.
	StartPosition string `json:"start_position"`
	// FailoverTime: a lease not renewed for this long is taken over by another worker.
	FailoverTime Duration `json:"failover_time"`
	// PollInterval is the least time between two GetRecords calls on one shard (5 calls/s/shard
	// is Kinesis's limit).
	PollInterval Duration `json:"poll_interval"`
	// MaxRecords per GetRecords call (1 to 10000).
	MaxRecords int `json:"max_records"`
	// ShardSyncInterval: how often the shard list is rescanned for new shards.
	ShardSyncInterval Duration `json:"shard_sync_interval"`
	// CheckpointInterval batches checkpoint writes in time.
	CheckpointInterval Duration `json:"checkpoint_interval"`
}

// StageConfig is what every stage has: how many messages it works on at once and what happens
// when a message fails.
type StageConfig struct {
	// Concurrency is how many of the stage's messages one process handles at once: for SQS stages
	// the subscriber's in-flight limit; for Kinesis stages the in-flight limit per shard (alerting
	// keeps 1 so each shard is evaluated in order; archival needs at least max_records, because a
	// batch holds its records in flight until it is written).
	Concurrency int `json:"concurrency"`
	// MaxReceives: a message whose SQS receive count exceeds it goes to the dead-letter queue
	// before the handler runs again. 0 disables (Kinesis stages have no receive count).
	MaxReceives int `json:"max_receives"`
	// DeadLetterQueue is the SQS queue poison messages go to.
	DeadLetterQueue string `json:"dead_letter_queue"`
	// OnRetriesExhausted: dead_letter publishes the message to the dead-letter queue once
	// in-process retries are used up; nack hands it back to its source for a later redelivery (SQS
	// only: then max_receives eventually dead-letters it).
	OnRetriesExhausted string      `json:"on_retries_exhausted"`
	Retry              RetryConfig `json:"retry"`
}

// RetryConfig bounds in-process retries of transient errors (exponential backoff).
type RetryConfig struct {
	MaxRetries      int      `json:"max_retries"`
	InitialInterval Duration `json:"initial_interval"`
	MaxInterval     Duration `json:"max_interval"`
	Multiplier      float64  `json:"multiplier"`
	// MaxElapsed stops retrying once this much time has passed since the first attempt (0 = no limit).
	MaxElapsed Duration `json:"max_elapsed"`
}

// ProvisioningConfig configures the provisioning completion stage.
type ProvisioningConfig struct {
	StageConfig
}

// BindingConfig configures the binding stage.
type BindingConfig struct {
	StageConfig
	// ActivationDeadline: a bind request for a device that is not ACTIVE yet is retried until this
	// long after it was sent, then rejected.
	ActivationDeadline Duration `json:"activation_deadline"`
}

// AlertingConfig configures the alerting stage.
type AlertingConfig struct {
	StageConfig
	Policies []AlertPolicy `json:"policies"`
}

// AlertPolicy is one alert rule evaluated on every telemetry message, as plain data; workers/
// converts it to its evaluator.
type AlertPolicy struct {
	// Name identifies the policy (state key, SNS attribute "policy").
	Name string `json:"name"`
	// Metric is a dotted path into the telemetry JSON object, e.g. "temperature" or "env.humidity".
	Metric string `json:"metric"`
	// Op is above or below: the direction in which Threshold is crossed.
	Op        string   `json:"op"`
	Threshold *float64 `json:"threshold"`
	// Consecutive readings beyond Threshold before the alert fires (default 1).
	Consecutive int `json:"consecutive"`
	// ClearThreshold is where a firing alert resolves (hysteresis); default Threshold.
	ClearThreshold *float64 `json:"clear_threshold"`
	// Cooldown is the minimum time between two FIRING notifications for one thing and policy.
	Cooldown Duration `json:"cooldown"`
	Severity string   `json:"severity"` // info, warning, critical
	Runbook  string   `json:"runbook"`  // optional link included in the email
}

// ArchivalConfig configures the archival stage's batches (a batch is written when any limit is hit).
type ArchivalConfig struct {
	StageConfig
	MaxRecords int      `json:"max_records"`
	MaxBytes   int      `json:"max_bytes"`
	MaxAge     Duration `json:"max_age"`
}

// Stage returns the shared settings of the named stage.
func (c Config) Stage(name string) (StageConfig, bool) {
	switch name {
	case StageProvisioning:
		return c.Provisioning.StageConfig, true
	case StageBinding:
		return c.Binding.StageConfig, true
	case StageAlerting:
		return c.Alerting.StageConfig, true
	case StageArchival:
		return c.Archival.StageConfig, true
	}
	return StageConfig{}, false
}

func ptr[T any](v T) *T { return &v }

func defaultStage(name string, concurrency, maxReceives int, onExhausted string) StageConfig {
	return StageConfig{
		Concurrency:        concurrency,
		MaxReceives:        maxReceives,
		DeadLetterQueue:    "thingpipe-" + name + "-dlq",
		OnRetriesExhausted: onExhausted,
		Retry: RetryConfig{
			MaxRetries:      5,
			InitialInterval: Duration(100 * time.Millisecond),
			MaxInterval:     Duration(5 * time.Second),
			Multiplier:      2,
			MaxElapsed:      Duration(30 * time.Second),
		},
	}
}

// Default returns the configuration used when nothing is set: every stage, resource names from
// DESIGN.md, and values that work against deploy/.
func Default() Config {
	return Config{
		Stages:          AllStages(),
		HTTPAddr:        ":9090",
		Log:             LogConfig{Level: "info", Format: "json"},
		ShutdownTimeout: Duration(30 * time.Second),
		Readiness: ReadinessConfig{
			DegradedWindow: Duration(30 * time.Second),
			CheckInterval:  Duration(15 * time.Second),
			CheckTimeout:   Duration(3 * time.Second),
		},
		Tracing: TracingConfig{Exporter: "none", SampleRatio: 1, ServiceName: "thingpipe"},
		Resources: ResourcesConfig{
			ProvisioningQueue: "thingpipe-provisioning",
			BindingQueue:      "thingpipe-binding",
			TelemetryStream:   "thingpipe-telemetry",
			LeaseTable:        "thingpipe-leases",
			DevicesTable:      "thingpipe-devices",
			BindingsTable:     "thingpipe-bindings",
			BindingsUserIndex: "byUser",
			AlertsTable:       "thingpipe-alerts",
			EventsTopic:       "thingpipe-events",
			AlertsTopic:       "thingpipe-alerts",
			ArchiveBucket:     "thingpipe-archive",
		},
		AWS: AWSConfig{ResponseTimeout: Duration(30 * time.Second)},
		SQS: SQSConfig{
			Receivers:          2,
			WaitTime:           Duration(20 * time.Second),
			VisibilityTimeout:  Duration(30 * time.Second),
			NackBackoffInitial: Duration(time.Second),
			NackBackoffMax:     Duration(time.Minute),
		},
		Kinesis: KinesisConfig{
			AlertingGroup:      "alerting",
			ArchivalGroup:      "archival",
			StartPosition:      "TRIM_HORIZON",
			FailoverTime:       Duration(10 * time.Second),
			PollInterval:       Duration(200 * time.Millisecond),
			MaxRecords:         10000,
			ShardSyncInterval:  Duration(30 * time.Second),
			CheckpointInterval: Duration(5 * time.Second),
		},
		// SQS stages hand a message back after in-process retries (SQS redelivers it after the
		// visibility timeout, and max_receives bounds that); Kinesis stages cannot hold a shard on one
		// record forever, so they dead-letter it.
		Provisioning: ProvisioningConfig{StageConfig: defaultStage(StageProvisioning, 20, 5, ExhaustedNack)},
		Binding: BindingConfig{
			StageConfig:        defaultStage(StageBinding, 20, 20, ExhaustedNack),
			ActivationDeadline: Duration(5 * time.Minute),
		},
		Alerting: AlertingConfig{
			StageConfig: defaultStage(StageAlerting, 1, 0, ExhaustedDeadLetter),
			// The same policies workers/alerting ships (DefaultPolicies).
			Policies: []AlertPolicy{
				{
					Name: "overheating", Metric: "temperature", Op: "above",
					Threshold: ptr(80.0), Consecutive: 3, ClearThreshold: ptr(75.0),
					Cooldown: Duration(10 * time.Minute), Severity: "critical",
					Runbook: "Check the device's ventilation and ambient temperature. If it keeps rising, power it " +
						"down remotely and send a technician; sustained heat damages the battery.",
				},
				{
					Name: "low-battery", Metric: "battery", Op: "below",
					Threshold: ptr(15.0), Consecutive: 1, ClearThreshold: ptr(20.0),
					Cooldown: Duration(30 * time.Minute), Severity: "warning",
					Runbook: "Schedule a battery replacement or recharge. The device will stop reporting when the " +
						"battery is empty.",
				},
			},
		},
		Archival: ArchivalConfig{
			StageConfig: defaultStage(StageArchival, 1000, 0, ExhaustedDeadLetter),
			MaxRecords:  500,
			MaxBytes:    4 << 20,
			MaxAge:      Duration(5 * time.Second),
		},
	}
}

// What a stage does with a message whose in-process retries are exhausted.
const (
	ExhaustedDeadLetter = "dead_letter"
	ExhaustedNack       = "nack"
)

// withDefaults fills what a partial alert policy leaves out.
func (c Config) withDefaults() Config {
	ps := slices.Clone(c.Alerting.Policies)
	for i := range ps {
		p := &ps[i]
		if p.Consecutive == 0 {
			p.Consecutive = 1
		}
		if p.ClearThreshold == nil && p.Threshold != nil {
			p.ClearThreshold = ptr(*p.Threshold)
		}
		if p.Severity == "" {
			p.Severity = "warning"
		}
	}
	c.Alerting.Policies = ps
	return c
}

// FieldError is one invalid configuration value, named by its key path.
type FieldError struct {
	Key string
	Msg string
}

func (e *FieldError) Error() string { return "config: " + e.Key + ": " + e.Msg }

type validator struct{ errs []error }

func (v *validator) add(key, format string, args ...any) {
	v.errs = append(v.errs, &FieldError{Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) positiveDuration(key string, d Duration) {
	if d <= 0 {
		v.add(key, "must be positive, got %s", d)
	}
}

func (v *validator) nonEmpty(key, s string) {
	if strings.TrimSpace(s) == "" {
		v.add(key, "must be set")
	}
}

func (v *validator) oneOf(key, s string, allowed ...string) {
	if !slices.Contains(allowed, s) {
		v.add(key, "must be one of %s, got %q", strings.Join(allowed, ", "), s)
	}
}

// Validate checks every value and returns all problems, each naming its key.
func (c Config) Validate() error {
	v := &validator{}
	if len(c.Stages) == 0 {
		v.add("stages", "must name at least one stage")
	}
	seen := map[string]bool{}
	for i, s := range c.Stages {
		key := fmt.Sprintf("stages[%d]", i)
		if !slices.Contains(AllStages(), s) {
			v.add(key, "unknown stage %q (want one of %s)", s, strings.Join(AllStages(), ", "))
		} else if seen[s] {
			v.add(key, "stage %q listed twice", s)
		}
		seen[s] = true
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		v.add("http_addr", "must be host:port, got %q", c.HTTPAddr)
	}
	v.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	v.oneOf("log.format", c.Log.Format, "json", "text")
	v.positiveDuration("shutdown_timeout", c.ShutdownTimeout)
	v.positiveDuration("readiness.degraded_window", c.Readiness.DegradedWindow)
	v.positiveDuration("readiness.check_interval", c.Readiness.CheckInterval)
	v.positiveDuration("readiness.check_timeout", c.Readiness.CheckTimeout)
	v.oneOf("tracing.exporter", c.Tracing.Exporter, "none", "stdout", "otlp")
	if c.Tracing.SampleRatio < 0 || c.Tracing.SampleRatio > 1 || math.IsNaN(c.Tracing.SampleRatio) {
		v.add("tracing.sample_ratio", "must be between 0 and 1, got %v", c.Tracing.SampleRatio)
	}
	v.nonEmpty("tracing.service_name", c.Tracing.ServiceName)

	r := c.Resources
	for _, kv := range [][2]string{
		{"provisioning_queue", r.ProvisioningQueue}, {"binding_queue", r.BindingQueue},
		{"telemetry_stream", r.TelemetryStream}, {"lease_table", r.LeaseTable},
		{"devices_table", r.DevicesTable}, {"bindings_table", r.BindingsTable},
		{"bindings_user_index", r.BindingsUserIndex},
		{"alerts_table", r.AlertsTable}, {"events_topic", r.EventsTopic},
		{"alerts_topic", r.AlertsTopic}, {"archive_bucket", r.ArchiveBucket},
	} {
		v.nonEmpty("resources."+kv[0], kv[1])
	}

	if c.SQS.Receivers < 1 {
		v.add("sqs.receivers", "must be at least 1, got %d", c.SQS.Receivers)
	}
	if c.SQS.WaitTime < 0 || c.SQS.WaitTime > Duration(20*time.Second) || c.SQS.WaitTime%Duration(time.Second) != 0 {
		v.add("sqs.wait_time", "must be whole seconds from 0s to 20s, got %s", c.SQS.WaitTime)
	}
	if c.AWS.ResponseTimeout <= c.SQS.WaitTime {
		v.add("aws.response_timeout", "must exceed sqs.wait_time (%s), which a long poll waits before AWS answers; got %s", c.SQS.WaitTime, c.AWS.ResponseTimeout)
	}
	if c.SQS.VisibilityTimeout < Duration(time.Second) || c.SQS.VisibilityTimeout > Duration(12*time.Hour) || c.SQS.VisibilityTimeout%Duration(time.Second) != 0 {
		v.add("sqs.visibility_timeout", "must be whole seconds from 1s to 12h, got %s", c.SQS.VisibilityTimeout)
	}
	v.positiveDuration("sqs.nack_backoff_initial", c.SQS.NackBackoffInitial)
	if c.SQS.NackBackoffMax < c.SQS.NackBackoffInitial || c.SQS.NackBackoffMax > Duration(12*time.Hour) {
		v.add("sqs.nack_backoff_max", "must be from sqs.nack_backoff_initial (%s) to 12h, got %s", c.SQS.NackBackoffInitial, c.SQS.NackBackoffMax)
	}

	k := c.Kinesis
	v.nonEmpty("kinesis.alerting_group", k.AlertingGroup)
	v.nonEmpty("kinesis.archival_group", k.ArchivalGroup)
	if k.AlertingGroup != "" && k.AlertingGroup == k.ArchivalGroup {
		v.add("kinesis.archival_group", "must differ from kinesis.alerting_group (each group reads every record)")
	}
	v.oneOf("kinesis.start_position", k.StartPosition, "TRIM_HORIZON", "LATEST")
	v.positiveDuration("kinesis.failover_time", k.FailoverTime)
	v.positiveDuration("kinesis.poll_interval", k.PollInterval)
	v.positiveDuration("kinesis.shard_sync_interval", k.ShardSyncInterval)
	v.positiveDuration("kinesis.checkpoint_interval", k.CheckpointInterval)
	if k.MaxRecords < 1 || k.MaxRecords > 10000 {
		v.add("kinesis.max_records", "must be between 1 and 10000, got %d", k.MaxRecords)
	}

	for _, name := range AllStages() {
		sc, _ := c.Stage(name)
		v.stage(name, sc)
	}
	v.positiveDuration("binding.activation_deadline", c.Binding.ActivationDeadline)
	if b := c.Binding; b.OnRetriesExhausted == ExhaustedNack && b.MaxReceives > 0 && c.SQS.NackBackoffInitial > 0 {
		// A request for a device not ACTIVE yet is nacked again and again; if SQS's redeliveries run
		// out before the deadline, it is dead-lettered instead of rejected with binding.rejected.
		if span := redeliverySpan(b.MaxReceives, c.SQS.NackBackoffInitial.D(), c.SQS.NackBackoffMax.D()); span < b.ActivationDeadline.D() {
			v.add("binding.max_receives", "%d receives with the SQS nack backoff span only about %s, less than binding.activation_deadline (%s): requests would be dead-lettered instead of rejected; raise it or sqs.nack_backoff_max",
				b.MaxReceives, span, b.ActivationDeadline)
		}
	}

	names := map[string]int{}
	for i, p := range c.Alerting.Policies {
		v.policy(fmt.Sprintf("alerting.policies[%d]", i), p, names, i)
	}

	if c.Archival.MaxRecords < 1 {
		v.add("archival.max_records", "must be at least 1, got %d", c.Archival.MaxRecords)
	}
	if c.Archival.MaxBytes < 1024 {
		v.add("archival.max_bytes", "must be at least 1024, got %d", c.Archival.MaxBytes)
	}
	v.positiveDuration("archival.max_age", c.Archival.MaxAge)
	if c.Archival.MaxRecords >= 1 && c.Archival.Concurrency >= 1 && c.Archival.Concurrency < c.Archival.MaxRecords {
		v.add("archival.concurrency", "must be at least archival.max_records (%d): a batch holds its records in flight until it is written, got %d",
			c.Archival.MaxRecords, c.Archival.Concurrency)
	}

	return errors.Join(v.errs...)
}

func (v *validator) stage(name string, s StageConfig) {
	if s.Concurrency < 1 {
		v.add(name+".concurrency", "must be at least 1, got %d", s.Concurrency)
	}
	if s.MaxReceives < 0 {
		v.add(name+".max_receives", "must be 0 (off) or more, got %d", s.MaxReceives)
	}
	v.nonEmpty(name+".dead_letter_queue", s.DeadLetterQueue)
	v.oneOf(name+".on_retries_exhausted", s.OnRetriesExhausted, ExhaustedDeadLetter, ExhaustedNack)
	r := s.Retry
	if r.MaxRetries < 0 {
		v.add(name+".retry.max_retries", "must be 0 or more, got %d", r.MaxRetries)
	}
	v.positiveDuration(name+".retry.initial_interval", r.InitialInterval)
	if r.MaxInterval < r.InitialInterval {
		v.add(name+".retry.max_interval", "must be at least retry.initial_interval (%s), got %s", r.InitialInterval, r.MaxInterval)
	}
	if r.Multiplier < 1 || math.IsNaN(r.Multiplier) {
		v.add(name+".retry.multiplier", "must be at least 1, got %v", r.Multiplier)
	}
	if r.MaxElapsed < 0 {
		v.add(name+".retry.max_elapsed", "must be 0 (no limit) or positive, got %s", r.MaxElapsed)
	}
}

func (v *validator) policy(key string, p AlertPolicy, names map[string]int, i int) {
	if strings.TrimSpace(p.Name) == "" {
		v.add(key+".name", "must be set")
	} else if !validPolicyName(p.Name) {
		v.add(key+".name", "must be 1 to 64 lower-case letters, digits, - or _, starting with a letter or digit, got %q", p.Name)
	} else if j, dup := names[p.Name]; dup {
		v.add(key+".name", "%q is already the name of alerting.policies[%d]", p.Name, j)
	} else {
		names[p.Name] = i
	}
	v.nonEmpty(key+".metric", p.Metric)
	if p.Metric != "" && !validMetricPath(p.Metric) {
		v.add(key+".metric", "must be a dotted path of letters, digits, - and _ like env.temperature, got %q", p.Metric)
	}
	v.oneOf(key+".op", p.Op, "above", "below")
	if p.Threshold == nil {
		v.add(key+".threshold", "must be set")
	} else if math.IsNaN(*p.Threshold) || math.IsInf(*p.Threshold, 0) {
		v.add(key+".threshold", "must be a finite number")
	}
	if p.Consecutive < 1 {
		v.add(key+".consecutive", "must be at least 1, got %d", p.Consecutive)
	}
	if p.Threshold != nil && p.ClearThreshold != nil {
		t, cl := *p.Threshold, *p.ClearThreshold
		switch {
		case p.Op == "above" && cl > t:
			v.add(key+".clear_threshold", "must not be above threshold (%v) for op above, got %v", t, cl)
		case p.Op == "below" && cl < t:
			v.add(key+".clear_threshold", "must not be below threshold (%v) for op below, got %v", t, cl)
		}
	}
	if p.Cooldown < 0 {
		v.add(key+".cooldown", "must be 0 or positive, got %s", p.Cooldown)
	}
	v.oneOf(key+".severity", p.Severity, "info", "warning", "critical")
}

// Duration is a time.Duration written as a Go duration string ("30s", "1m30s") in YAML and in
// the environment.
type Duration time.Duration

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes the duration string, so a marshalled Config reads back the same.
func (d Duration) MarshalJSON() ([]byte, error) { return []byte(strconv.Quote(d.String())), nil }

func parseDuration(s string) (Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("must be a duration like 30s or 1m30s, got %q", s)
	}
	return Duration(d), nil
}

// Load reads the YAML file at path (none when path is ""), applies THINGPIPE_* overrides from
// environ (os.Environ() in production), fills defaults and validates. Every error names its key.
func Load(path string, environ []string) (Config, error) {
	cfg := Default()
	if path != "" {
		data, err := os.ReadFile(path) // #nosec G304 -- the config file the operator names (--config)
		if err != nil {
			return Config{}, fmt.Errorf("config: %w", err)
		}
		if cfg, err = parseYAML(cfg, data, path); err != nil {
			return Config{}, err
		}
	}
	cfg, err := applyEnv(cfg, environ)
	if err != nil {
		return Config{}, err
	}
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// validPolicyName matches workers/alerting's rule for policy names (they become state keys).
func validPolicyName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
		case (r == '-' || r == '_') && i > 0:
		default:
			return false
		}
	}
	return true
}

// validMetricPath: dot-separated non-empty segments of letters, digits, - and _.
func validMetricPath(s string) bool {
	for seg := range strings.SplitSeq(s, ".") {
		if seg == "" {
			return false
		}
		for _, r := range seg {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

// redeliverySpan is the least time SQS takes to deliver a message maxReceives+1 times when every
// delivery is nacked: the sum of the nack backoffs initial × 2^(n−1), each capped at limit.
func redeliverySpan(maxReceives int, initial, limit time.Duration) time.Duration {
	var total time.Duration
	wait := initial
	for range maxReceives {
		total += min(wait, limit)
		if wait < limit {
			wait *= 2
		}
	}
	return total
}
