package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	awskinesis "github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel/trace"

	"github.com/thingpipe/thingpipe/internal/moto"
	"github.com/thingpipe/thingpipe/pipeline"
	"github.com/thingpipe/thingpipe/pipeline/kinesis"
	tpsqs "github.com/thingpipe/thingpipe/pipeline/sqs"
	"github.com/thingpipe/thingpipe/workers/alerting"
	"github.com/thingpipe/thingpipe/workers/archival"
	"github.com/thingpipe/thingpipe/workers/binding"
	"github.com/thingpipe/thingpipe/workers/eventsns"
	"github.com/thingpipe/thingpipe/workers/provisioning"
)

func newRunCmd() *cobra.Command {
	var configPath, stages, httpAddr string
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the pipeline stages against AWS until SIGINT/SIGTERM",
		Long: `run starts the selected stages (default: all four) as watermill routers reading SQS and Kinesis,
serves /metrics, /healthz and /readyz, and on SIGINT/SIGTERM stops receiving, finishes in-flight
messages, flushes SQS deletes, Kinesis checkpoints and archival batches, and releases shard leases.
A second SIGINT/SIGTERM during that shutdown exits at once (status 1); unfinished messages are
redelivered later.

Configuration: --config (or THINGPIPE_CONFIG) names a YAML file (see deploy/thingpipe.example.yaml);
THINGPIPE_* variables override it; flags override both. AWS credentials, region and endpoint come from
the SDK's default chain (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL ...).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configPath == "" {
				configPath = os.Getenv(pipeline.EnvConfigFile)
			}
			// Flags are applied as the last environment entries, so they win and are validated,
			// with the key named, like every other value.
			environ := os.Environ()
			if cmd.Flags().Changed("stages") {
				environ = append(environ, pipeline.EnvName("stages")+"="+stages)
			}
			if cmd.Flags().Changed("http-addr") {
				environ = append(environ, pipeline.EnvName("http_addr")+"="+httpAddr)
			}
			cfg, err := pipeline.Load(configPath, environ)
			if err != nil {
				return withCode(2, err)
			}
			// main's context ends on the first SIGINT/SIGTERM, which starts the graceful shutdown;
			// these signals are counted here too, so a second one can cut it short.
			sigs := make(chan os.Signal, 2)
			signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
			defer signal.Stop(sigs)
			go exitOnSecondSignal(sigs, cmd.ErrOrStderr(), os.Exit)
			return run(cmd.Context(), cfg, cmd.ErrOrStderr(), nil)
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "YAML configuration file (default $THINGPIPE_CONFIG; none: defaults)")
	cmd.Flags().StringVar(&stages, "stages", "", "comma-separated stages to run: provisioning,binding,alerting,archival (default all)")
	cmd.Flags().StringVar(&httpAddr, "http-addr", "", "address for /metrics, /healthz, /readyz (default :9090)")
	return cmd
}

// exitOnSecondSignal waits for two signals on sigs: the first starts the graceful shutdown (through
// main's context), the second ends the process at once with status 1, which is what an operator
// pressing Ctrl-C twice means. What was in flight is handed out again after the visibility timeout
// or failover_time, as after a crash (every stage is idempotent).
func exitOnSecondSignal(sigs <-chan os.Signal, stderr io.Writer, exit func(int)) {
	if _, ok := <-sigs; !ok {
		return
	}
	sig, ok := <-sigs
	if !ok {
		return
	}
	fmt.Fprintf(stderr, "thingpipe: second signal (%s) during shutdown: exiting now without finishing it; unfinished messages will be redelivered\n", sig)
	exit(1)
}

// run runs the pipeline cfg describes until ctx ends. Logs go to logw. ready, if not nil, is called
// with the HTTP server's address once it listens (tests use port 0).
func run(ctx context.Context, cfg pipeline.Config, logw io.Writer, ready func(addr string)) error {
	log, err := pipeline.NewLogger(logw, cfg.Log)
	if err != nil {
		return err
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return fmt.Errorf("loading AWS configuration: %w", err)
	}
	if moto.IsLoopbackEndpoint(awsCfg) {
		// An emulator on this machine: moto's conditional writes are not atomic under concurrent
		// requests, so this process sends DynamoDB calls one at a time (never needed against AWS).
		moto.SerializeDynamoDB(&awsCfg)
		log.Info("AWS endpoint on loopback: DynamoDB calls serialized for the emulator")
	}
	metrics := pipeline.NewMetrics()
	health := pipeline.NewHealth(pipeline.HealthOptions{
		DegradedWindow: cfg.Readiness.DegradedWindow.D(),
		CheckInterval:  cfg.Readiness.CheckInterval.D(),
		CheckTimeout:   cfg.Readiness.CheckTimeout.D(),
		Metrics:        metrics,
	})
	pipeline.ReportAWSErrors(&awsCfg, health)
	tp, shutdownTracing, err := pipeline.NewTracerProvider(ctx, cfg.Tracing, logw)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := shutdownTracing(sctx); err != nil {
			log.Warn("flushing traces", slog.String("error", err.Error()))
		}
	}()

	p, closePipeline, err := buildPipeline(ctx, cfg, awsCfg, log, metrics, health, tp, nil)
	if err != nil {
		return err
	}
	defer closePipeline()

	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http_addr: %w", err)
	}
	srv := &http.Server{Handler: pipeline.NewMux(metrics, health), ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("thingpipe running", slog.Any("stages", cfg.Stages), slog.String("http_addr", ln.Addr().String()))
	if ready != nil {
		ready(ln.Addr().String())
	}

	runErr := p.Run(ctx)

	// The HTTP server outlives the stages, so /readyz answers 503 while they drain.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("stopping HTTP server", slog.String("error", err.Error()))
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		runErr = errors.Join(runErr, fmt.Errorf("http server: %w", err))
	}
	return runErr
}

// buildPipeline assembles the configured stages on awsCfg. thingpipe run and thingpipe local both
// use it, so the local stack runs exactly the production wiring. The returned func releases what it
// opened; call it once the pipeline has stopped. onOutcome, if not nil, is pipeline.Options.OnOutcome.
func buildPipeline(ctx context.Context, cfg pipeline.Config, awsCfg aws.Config, log *slog.Logger,
	metrics *pipeline.Metrics, health *pipeline.Health, tp trace.TracerProvider,
	onOutcome func(stage string, msg *message.Message, outcome string)) (*pipeline.Pipeline, func(), error) {
	// Every call of the stages (and their readiness checks) gets a per-attempt response timeout, so a
	// stalled connection fails and is retried instead of hanging a stage (aws.response_timeout).
	awsCfg.HTTPClient = pipeline.AWSHTTPClient(cfg.AWS)
	c := newClients(awsCfg)
	dlq, err := tpsqs.NewPublisher(tpsqs.PublisherConfig{Client: c.sqs, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	b := &builder{cfg: cfg, log: log, c: c, metrics: metrics, health: health, dlq: dlq}
	stages, err := b.stages(ctx)
	if err != nil {
		_ = dlq.Close() // it only waits for in-flight sends, and returns nil
		return nil, nil, err
	}
	p, err := pipeline.New(pipeline.Options{
		Logger: log, Metrics: metrics, Health: health, TracerProvider: tp,
		ShutdownTimeout: cfg.ShutdownTimeout.D(), OnOutcome: onOutcome,
	}, stages...)
	if err != nil {
		_ = dlq.Close()
		return nil, nil, err
	}
	return p, func() { _ = dlq.Close() }, nil
}

type clients struct {
	sqs      *awssqs.Client
	dynamodb *dynamodb.Client
	sns      *sns.Client
	kinesis  *awskinesis.Client
	s3       *s3.Client
}

func newClients(cfg aws.Config) clients {
	// moto (and other emulators) on a loopback endpoint need path-style bucket addressing.
	pathStyle := cfg.BaseEndpoint != nil || os.Getenv("AWS_ENDPOINT_URL_S3") != ""
	return clients{
		sqs:      awssqs.NewFromConfig(cfg),
		dynamodb: dynamodb.NewFromConfig(cfg),
		sns:      sns.NewFromConfig(cfg),
		kinesis:  awskinesis.NewFromConfig(cfg),
		s3:       s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = pathStyle }),
	}
}

// builder turns the configuration into pipeline stages and registers the readiness checks of the
// resources they use.
type builder struct {
	cfg     pipeline.Config
	log     *slog.Logger
	c       clients
	metrics *pipeline.Metrics
	health  *pipeline.Health
	dlq     *tpsqs.Publisher
	events  *eventsns.Publisher
}

func (b *builder) stages(ctx context.Context) ([]pipeline.Stage, error) {
	var out []pipeline.Stage
	for _, name := range b.cfg.Stages {
		var (
			s   pipeline.Stage
			err error
		)
		switch name {
		case pipeline.StageProvisioning:
			s, err = b.provisioning(ctx)
		case pipeline.StageBinding:
			s, err = b.binding(ctx)
		case pipeline.StageAlerting:
			s, err = b.alerting(ctx)
		case pipeline.StageArchival:
			s, err = b.archival()
		default:
			err = fmt.Errorf("unknown stage %q", name)
		}
		if err != nil {
			return nil, fmt.Errorf("stage %s: %w", name, err)
		}
		sc, _ := b.cfg.Stage(name)
		s.Name = name
		s.DeadLetter = b.dlq
		s.DeadLetterTopic = sc.DeadLetterQueue
		s.Failure = sc.FailurePolicy()
		b.checkQueue(sc.DeadLetterQueue)
		out = append(out, s)
	}
	return out, nil
}

// eventPublisher resolves the outcome topic once, for the stages that publish outcomes.
func (b *builder) eventPublisher(ctx context.Context) (*eventsns.Publisher, error) {
	if b.events != nil {
		return b.events, nil
	}
	arn, err := eventsns.ResolveTopicARN(ctx, b.c.sns, b.cfg.Resources.EventsTopic)
	if err != nil {
		return nil, fmt.Errorf("resources.events_topic: %w", err)
	}
	b.checkTopic(arn)
	b.events, err = eventsns.New(b.c.sns, arn)
	return b.events, err
}

func (b *builder) sqsSubscriber(concurrency int) (*tpsqs.Subscriber, error) {
	q := b.cfg.SQS
	wait := q.WaitTime.D()
	if wait == 0 {
		wait = -1 // short polling; the subscriber reads 0 as "default"
	}
	return tpsqs.NewSubscriber(tpsqs.SubscriberConfig{
		Client:             b.c.sqs,
		Logger:             b.log,
		OnInFlight:         b.metrics.SetSQSInFlight,
		Receivers:          q.Receivers,
		MaxInFlight:        concurrency,
		VisibilityTimeout:  q.VisibilityTimeout.D(),
		WaitTime:           wait,
		NackBackoffInitial: q.NackBackoffInitial.D(),
		NackBackoffMax:     q.NackBackoffMax.D(),
		CloseTimeout:       b.cfg.ShutdownTimeout.D(),
	})
}

func (b *builder) kinesisSubscriber(group string, concurrency int) (*kinesis.Subscriber, error) {
	k := b.cfg.Kinesis
	return kinesis.NewSubscriber(kinesis.SubscriberConfig{
		Kinesis:            b.c.kinesis,
		DynamoDB:           b.c.dynamodb,
		Logger:             b.log,
		ConsumerGroup:      group,
		LeaseTable:         b.cfg.Resources.LeaseTable,
		FailoverTime:       k.FailoverTime.D(),
		ShardSyncInterval:  k.ShardSyncInterval.D(),
		CheckpointInterval: k.CheckpointInterval.D(),
		MaxInFlight:        concurrency,
		StartPosition:      kinesis.StartPosition(k.StartPosition),
		GetRecordsLimit:    int32(k.MaxRecords), // #nosec G115 -- Validate keeps kinesis.max_records within 1..10000
		PollInterval:       k.PollInterval.D(),
		DrainTimeout:       b.cfg.ShutdownTimeout.D(),
		OnLag: func(_, shardID string, millisBehind int64) {
			b.metrics.SetKinesisLag(group, shardID, time.Duration(millisBehind)*time.Millisecond)
		},
		OnShardReleased: func(_, shardID string) { b.metrics.DeleteKinesisLag(group, shardID) },
	})
}

func (b *builder) provisioning(ctx context.Context) (pipeline.Stage, error) {
	r := b.cfg.Resources
	events, err := b.eventPublisher(ctx)
	if err != nil {
		return pipeline.Stage{}, err
	}
	st, err := provisioning.New(provisioning.Config{DevicesTable: r.DevicesTable, Logger: b.log},
		provisioning.NewDynamoStore(b.c.dynamodb, r.DevicesTable), events)
	if err != nil {
		return pipeline.Stage{}, err
	}
	sub, err := b.sqsSubscriber(b.cfg.Provisioning.Concurrency)
	if err != nil {
		return pipeline.Stage{}, err
	}
	b.checkQueue(r.ProvisioningQueue)
	b.checkTable(r.DevicesTable)
	return pipeline.Stage{Subscriber: sub, Topic: r.ProvisioningQueue, Handler: st.Handle, HandlerName: "provisioning.Stage.Handle"}, nil
}

func (b *builder) binding(ctx context.Context) (pipeline.Stage, error) {
	r := b.cfg.Resources
	events, err := b.eventPublisher(ctx)
	if err != nil {
		return pipeline.Stage{}, err
	}
	st, err := binding.New(binding.Config{
		BindingsTable: r.BindingsTable, UserIndex: r.BindingsUserIndex, DevicesTable: r.DevicesTable,
		ActivationDeadline: b.cfg.Binding.ActivationDeadline.D(), Logger: b.log,
	}, binding.NewDynamoStore(b.c.dynamodb, r.BindingsTable, r.BindingsUserIndex, r.DevicesTable), events)
	if err != nil {
		return pipeline.Stage{}, err
	}
	sub, err := b.sqsSubscriber(b.cfg.Binding.Concurrency)
	if err != nil {
		return pipeline.Stage{}, err
	}
	b.checkQueue(r.BindingQueue)
	b.checkTable(r.BindingsTable)
	b.checkTable(r.DevicesTable)
	return pipeline.Stage{Subscriber: sub, Topic: r.BindingQueue, Handler: st.Handle, HandlerName: "binding.Stage.Handle"}, nil
}

func (b *builder) alerting(ctx context.Context) (pipeline.Stage, error) {
	r := b.cfg.Resources
	events, err := b.eventPublisher(ctx)
	if err != nil {
		return pipeline.Stage{}, err
	}
	alertsARN, err := eventsns.ResolveTopicARN(ctx, b.c.sns, r.AlertsTopic)
	if err != nil {
		return pipeline.Stage{}, fmt.Errorf("resources.alerts_topic: %w", err)
	}
	notifier, err := alerting.NewSNSNotifier(b.c.sns, alertsARN)
	if err != nil {
		return pipeline.Stage{}, err
	}
	st, err := alerting.New(alerting.Config{AlertsTable: r.AlertsTable, Policies: alertPolicies(b.cfg.Alerting.Policies), Logger: b.log},
		alerting.NewDynamoStore(b.c.dynamodb, r.AlertsTable), notifier, events)
	if err != nil {
		return pipeline.Stage{}, err
	}
	sub, err := b.kinesisSubscriber(b.cfg.Kinesis.AlertingGroup, b.cfg.Alerting.Concurrency)
	if err != nil {
		return pipeline.Stage{}, err
	}
	b.checkStream(r.TelemetryStream)
	b.checkTable(r.LeaseTable)
	b.checkTable(r.AlertsTable)
	b.checkTopic(alertsARN)
	return pipeline.Stage{Subscriber: sub, Topic: r.TelemetryStream, Handler: st.Handle, HandlerName: "alerting.Stage.Handle"}, nil
}

// alertPolicies converts the configuration's policies (validated, defaults filled) to the stage's.
func alertPolicies(ps []pipeline.AlertPolicy) []alerting.Policy {
	out := make([]alerting.Policy, 0, len(ps))
	for _, p := range ps {
		out = append(out, alerting.Policy{
			Name: p.Name, Metric: p.Metric, Comparison: alerting.Comparison(p.Op), Threshold: *p.Threshold,
			Clear: p.ClearThreshold, Consecutive: p.Consecutive, Cooldown: p.Cooldown.D(),
			Severity: p.Severity, Runbook: p.Runbook,
		})
	}
	return out
}

func (b *builder) archival() (pipeline.Stage, error) {
	r := b.cfg.Resources
	a := b.cfg.Archival
	arch, err := archival.New(archival.Config{
		Bucket: r.ArchiveBucket, MaxRecords: a.MaxRecords, MaxBytes: a.MaxBytes, MaxAge: a.MaxAge.D(), Logger: b.log,
	}, archival.NewS3Store(b.c.s3, r.ArchiveBucket))
	if err != nil {
		return pipeline.Stage{}, err
	}
	sub, err := b.kinesisSubscriber(b.cfg.Kinesis.ArchivalGroup, a.Concurrency)
	if err != nil {
		return pipeline.Stage{}, err
	}
	b.checkStream(r.TelemetryStream)
	b.checkTable(r.LeaseTable)
	b.checkBucket(r.ArchiveBucket)
	return pipeline.Stage{
		Subscriber: sub, Topic: r.TelemetryStream, Handler: arch.Handle, HandlerName: "archival.Archiver.Handle",
		// Handlers wait for their batch to be written: write the open batches as soon as receiving
		// stops, so in-flight records are acked and checkpointed before the leases are released.
		Drain: arch.Flush,
		Close: arch.Close,
	}, nil
}

// Readiness checks: one cheap read per resource the selected stages use, each registered once.
func (b *builder) check(name string, fn func(context.Context) error) {
	if b.health.HasCheck(name) {
		return
	}
	b.health.AddCheck(name, fn)
}

func (b *builder) checkQueue(name string) {
	b.check("sqs:"+name, func(ctx context.Context) error {
		_, err := b.c.sqs.GetQueueUrl(ctx, &awssqs.GetQueueUrlInput{QueueName: aws.String(name)})
		return err
	})
}

func (b *builder) checkTable(name string) {
	b.check("dynamodb:"+name, func(ctx context.Context) error {
		_, err := b.c.dynamodb.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)})
		return err
	})
}

func (b *builder) checkStream(name string) {
	b.check("kinesis:"+name, func(ctx context.Context) error {
		_, err := b.c.kinesis.DescribeStreamSummary(ctx, &awskinesis.DescribeStreamSummaryInput{StreamName: aws.String(name)})
		return err
	})
}

func (b *builder) checkTopic(arn string) {
	b.check("sns:"+arn, func(ctx context.Context) error {
		_, err := b.c.sns.GetTopicAttributes(ctx, &sns.GetTopicAttributesInput{TopicArn: aws.String(arn)})
		return err
	})
}

func (b *builder) checkBucket(name string) {
	b.check("s3:"+name, func(ctx context.Context) error {
		_, err := b.c.s3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(name)})
		return err
	})
}
