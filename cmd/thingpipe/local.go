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
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/spf13/cobra"

	"github.com/thingpipe/thingpipe/broker"
	"github.com/thingpipe/thingpipe/deploy"
	"github.com/thingpipe/thingpipe/internal/apicalls"
	"github.com/thingpipe/thingpipe/internal/moto"
	"github.com/thingpipe/thingpipe/pipeline"
	"github.com/thingpipe/thingpipe/rules"
	"github.com/thingpipe/thingpipe/rules/bridge"
	"github.com/thingpipe/thingpipe/rules/iotsql"
	"github.com/thingpipe/thingpipe/simulator"
)

type localFlags struct {
	awsEndpoint string
	mqttAddr    string
	httpAddr    string
	rulesDir    string
	configFile  string
	devices     int
	rate        float64
	duration    time.Duration
	seed        uint64
	progress    time.Duration
}

func newLocalCmd() *cobra.Command {
	var f localFlags
	cmd := &cobra.Command{
		Use:   "local",
		Short: "Run the whole system on this machine: AWS emulator, MQTT broker, rules, stages and devices",
		Long: `local runs all of thingpipe on one machine:

  1. starts moto's server on loopback (unless --aws-endpoint names one) and points the AWS SDK at it;
  2. deploys deploy/cloudformation to it and applies the rule files (both idempotent: started again
     against the same endpoint, it finds them in place and the stages resume from their checkpoints);
  3. starts an embedded MQTT broker on --mqtt-addr that, like AWS IoT Core, publishes
     $aws/events/presence/{connected,disconnected}/<clientId> and accepts registry events on
     $aws/events/thing/<thing>/created (things created through the emulator's IoT API produce one too);
  4. runs every message through the rules bridge (the rule files' actions through the AWS SDK);
  5. runs the four stages (provisioning, binding, alerting, archival);
  6. runs a simulated fleet (--devices; 0 runs none, so outside MQTT clients can drive it).

Progress is shown live on a terminal and as log lines otherwise. /healthz, /readyz and /metrics are
served on --http-addr; /readyz turns ready once everything is up. Ctrl-C (or --duration) shuts down
cleanly and prints a summary.`,
		Example: `  thingpipe local                          # a few dozen devices, until Ctrl-C
  thingpipe local --devices 0              # drive it yourself, e.g.:
      mosquitto_pub -h 127.0.0.1 -t 'dt/dev-1/telemetry' -m '{"temperature": 93.1, "battery": 80}'
  thingpipe local --duration 1m --devices 100 --rate 50`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runLocal(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.awsEndpoint, "aws-endpoint", "", "AWS endpoint to use instead of starting moto's server (e.g. http://127.0.0.1:5000)")
	fl.StringVar(&f.mqttAddr, "mqtt-addr", broker.DefaultAddr, "address of the embedded MQTT broker")
	fl.StringVar(&f.httpAddr, "http-addr", "127.0.0.1:8080", "address for /healthz, /readyz and /metrics")
	fl.StringVar(&f.rulesDir, "rules", "deploy/rules", "directory of rule files")
	fl.StringVar(&f.configFile, "config", "", "pipeline configuration file (YAML); default: built-in defaults with short local batching")
	fl.IntVar(&f.devices, "devices", 30, "simulated devices (0: no simulator)")
	fl.Float64Var(&f.rate, "rate", 10, "simulated telemetry messages per second, across all devices")
	fl.DurationVar(&f.duration, "duration", 0, "stop by itself after this long and print a summary (0: until Ctrl-C)")
	fl.Uint64Var(&f.seed, "seed", 1, "seed of the simulated fleet")
	fl.DurationVar(&f.progress, "progress", 2*time.Second, "how often progress is shown")
	return cmd
}

// localStack is everything `thingpipe local` runs, so shutdown can stop it in the right order.
type localStack struct {
	log      *slog.Logger
	calls    *apicalls.Counter
	metrics  *pipeline.Metrics
	health   *pipeline.Health
	broker   *broker.Broker
	bridge   *bridge.Bridge
	routed   atomic.Int64 // messages that matched at least one rule
	unrouted atomic.Int64 // messages no rule matched
	failed   atomic.Int64 // rule actions that failed (their errorAction ran)
	inbox    *inbox       // stands in for the operators' email subscription
	// unevaluated counts rule evaluations that failed (e.g. a JSON rule on a payload that is not JSON):
	// as in AWS IoT, where they count in the ParseError metric and are logged, no action and no
	// errorAction runs, so the log line and this count are all a user sees of them.
	unevaluated atomic.Int64
	hooks       localHooks

	// What startLocal opened: stop and close release it.
	httpSrv  *http.Server
	moto     *moto.Server // nil with --aws-endpoint
	awsCfg   aws.Config   // instrumented: every call is counted in calls
	outputs  deploy.Outputs
	pipeCfg  pipeline.Config
	stages   *runningStages
	bg       sync.WaitGroup // registry watcher and simulator
	cancelBG context.CancelFunc
}

// localHooks let thingpipe bench observe the stack; nil fields observe nothing.
type localHooks struct {
	// onRoute is called for every MQTT message after the rules bridge handled it.
	onRoute func(m broker.Message, routed bool)
	// onOutcome is pipeline.Options.OnOutcome.
	onOutcome func(stage string, msg *message.Message, outcome string)
}

func runLocal(ctx context.Context, stdout, stderr io.Writer, f localFlags) error {
	if f.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.duration)
		defer cancel()
	}
	s, err := startLocal(ctx, stderr, f, localHooks{})
	if err != nil {
		return err
	}
	defer s.close()
	sim, _, err := s.startSimulator(ctx, f)
	if err != nil {
		_ = s.stop()
		return err
	}

	started := time.Now()
	fmt.Fprintf(stdout, "thingpipe local is up: MQTT on %s, health on http://%s/readyz, %d simulated devices. Ctrl-C stops.\n"+
		"Alert emails land in the SQS queue %s (moto sends no email).\n",
		s.broker.Addr(), s.httpSrv.Addr, f.devices, s.inbox.url)
	s.showProgress(ctx, stderr, f.progress, sim, started)

	s.log.Info("shutting down")
	err = s.stop()
	s.writeSummary(context.Background(), stdout, sim, time.Since(started))
	return err
}

// startLocal starts everything but the simulated fleet: the emulator (unless --aws-endpoint), the
// stack, the rules, the rules bridge, the stages and the broker. On error, what it started is
// released. Otherwise call stop, then close.
func startLocal(ctx context.Context, stderr io.Writer, f localFlags, hooks localHooks) (_ *localStack, err error) {
	if f.devices < 0 {
		return nil, withCode(2, fmt.Errorf("--devices must be 0 or more"))
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s := &localStack{log: log, calls: apicalls.New(), metrics: pipeline.NewMetrics(), hooks: hooks}
	s.health = pipeline.NewHealth(pipeline.HealthOptions{Metrics: s.metrics, CheckInterval: 2 * time.Second})
	defer func() {
		if err != nil {
			_ = s.stop()
			s.close()
		}
	}()

	// /readyz says "not ready" until every part is up; the health server comes first so a supervisor
	// sees that rather than "connection refused".
	var up atomic.Bool
	s.health.AddCheck("local-stack", func(context.Context) error {
		if !up.Load() {
			return errors.New("starting: emulator, stack, rules, broker and stages are not all up yet")
		}
		return nil
	})
	s.httpSrv, err = serveHTTP(f.httpAddr, pipeline.NewMux(s.metrics, s.health), log)
	if err != nil {
		return nil, err
	}

	if f.awsEndpoint == "" {
		log.Info("starting moto's server (the local AWS emulator)")
		srv, err := moto.Start()
		if err != nil {
			return nil, fmt.Errorf("starting the AWS emulator (or pass --aws-endpoint): %w", err)
		}
		s.moto = srv
		srv.ExportEnv()
		log.Info("AWS emulator up", "endpoint", srv.Endpoint)
	} else {
		useEndpoint(f.awsEndpoint)
	}
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("loading AWS configuration: %w", err)
	}
	// The bridge and the set-up share the stages' HTTP client settings (the stages get cfg.AWS's).
	awsCfg.HTTPClient = pipeline.AWSHTTPClient(pipeline.Default().AWS)
	s.calls.Instrument(&awsCfg)
	pipeline.ReportAWSErrors(&awsCfg, s.health)
	// moto's conditional writes are not atomic under concurrent requests; one DynamoDB call at a
	// time makes it behave like DynamoDB for this process (see moto.SerializeDynamoDB).
	moto.SerializeDynamoDB(&awsCfg)
	s.awsCfg = awsCfg

	log.Info("deploying the CloudFormation stack")
	s.outputs, err = deploy.Deploy(ctx, awsCfg, deploy.Options{PollInterval: 500 * time.Millisecond, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("deploying the stack: %w", err)
	}
	resolved, err := applyLocalRules(ctx, awsCfg, f.rulesDir, log)
	if err != nil {
		return nil, err
	}
	s.inbox, err = subscribeInbox(ctx, awsCfg, s.outputs.AlertsTopicARN)
	if err != nil {
		return nil, err
	}

	s.pipeCfg, err = localPipelineConfig(f.configFile, s.outputs)
	if err != nil {
		return nil, err
	}

	// The broker hands messages to the bridge, and the bridge republishes through the broker.
	var brk *broker.Broker
	republisher := republishFunc(func(ctx context.Context, topic string, payload []byte, qos byte) error {
		return brk.Republish(ctx, topic, payload, qos)
	})
	s.bridge, err = bridge.New(bridge.Config{AWS: awsCfg, Rules: resolved, Republisher: republisher, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("starting the rules bridge: %w", err)
	}
	brk, err = broker.New(broker.Config{Addr: f.mqttAddr, Logger: log, AccountID: moto.AccountID, Sink: broker.SinkFunc(s.route)})
	if err != nil {
		return nil, fmt.Errorf("configuring the MQTT broker: %w", err)
	}

	s.stages, err = startStages(ctx, awsCfg, s.pipeCfg, s.metrics, s.health, log, hooks.onOutcome)
	if err != nil {
		return nil, fmt.Errorf("starting the stages: %w", err)
	}

	if err := brk.Start(ctx); err != nil {
		return nil, fmt.Errorf("starting the MQTT broker on %s (is another broker running there? use --mqtt-addr): %w", f.mqttAddr, err)
	}
	s.broker = brk
	s.health.AddCheck("mqtt-broker", func(ctx context.Context) error {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", brk.Addr())
		if err != nil {
			return err
		}
		return conn.Close()
	})

	up.Store(true)
	bgCtx, cancel := context.WithCancel(ctx)
	s.cancelBG = cancel
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		watchRegistry(bgCtx, iot.NewFromConfig(awsCfg), brk, log)
	}()
	return s, nil
}

// startSimulator runs the simulated fleet (none with --devices 0) until ctx ends; done is closed when
// it has finished and disconnected its clients. stop waits for it too.
func (s *localStack) startSimulator(ctx context.Context, f localFlags) (_ *simulator.Simulator, done <-chan struct{}, _ error) {
	finished := make(chan struct{})
	if f.devices == 0 {
		close(finished)
		return nil, finished, nil
	}
	sim, err := simulator.New(simulator.Config{
		URL: "mqtt://" + s.broker.Addr(), Devices: f.devices, Rate: f.rate, Seed: f.seed,
		Logger: s.log.With("component", "simulator"),
	})
	if err != nil {
		return nil, nil, withCode(2, fmt.Errorf("simulator: %w", err))
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		defer close(finished)
		if err := sim.Run(ctx); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
			s.log.Error("simulator stopped", "err", err)
		}
	}()
	return sim, finished, nil
}

// stop shuts the stack down: devices first (it waits for the simulator, whose context the caller
// ends), then the broker (which drains into the bridge), then the stages (which finish in-flight work,
// flush archives and checkpoints, and release leases). The emulator keeps running until close, so
// what the stages wrote can still be read. Calling it again does nothing.
func (s *localStack) stop() error {
	if s.cancelBG != nil {
		s.cancelBG()
	}
	s.bg.Wait()
	stopCtx, cancel := context.WithTimeout(context.Background(), s.pipeCfg.ShutdownTimeout.D()+10*time.Second)
	defer cancel()
	var errs []error
	if s.broker != nil {
		if err := s.broker.Close(stopCtx); err != nil {
			errs = append(errs, fmt.Errorf("closing the MQTT broker: %w", err))
		}
	}
	if s.stages != nil {
		if err := s.stages.Stop(stopCtx); err != nil {
			errs = append(errs, fmt.Errorf("stopping the stages: %w", err))
		}
		s.stages = nil
	}
	return errors.Join(errs...)
}

// close stops the HTTP server and the emulator thingpipe started, after stop.
func (s *localStack) close() {
	if s.httpSrv != nil {
		shutdownHTTP(s.httpSrv)
		s.httpSrv = nil
	}
	if s.moto != nil {
		s.moto.Stop()
		s.moto = nil
	}
}

// inbox is an SQS queue subscribed to the alerts topic: locally it is the operators' mailbox, since
// the emulator accepts email subscriptions but sends nothing.
type inbox struct {
	client *sqs.Client
	url    string
}

const inboxQueue = "thingpipe-local-alert-inbox"

func subscribeInbox(ctx context.Context, cfg aws.Config, topicARN string) (*inbox, error) {
	client := sqs.NewFromConfig(cfg)
	q, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(inboxQueue)})
	if err != nil {
		return nil, fmt.Errorf("creating the local alert inbox: %w", err)
	}
	attrs, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: q.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn},
	})
	if err != nil {
		return nil, fmt.Errorf("reading the local alert inbox: %w", err)
	}
	// Subscribe is idempotent for the same topic, protocol and endpoint, so a restart adds no second copy.
	if _, err := sns.NewFromConfig(cfg).Subscribe(ctx, &sns.SubscribeInput{
		TopicArn: aws.String(topicARN), Protocol: aws.String("sqs"),
		Endpoint: aws.String(attrs.Attributes[string(sqstypes.QueueAttributeNameQueueArn)]),
	}); err != nil {
		return nil, fmt.Errorf("subscribing the local alert inbox to %s: %w", topicARN, err)
	}
	return &inbox{client: client, url: aws.ToString(q.QueueUrl)}, nil
}

// count is how many alert emails wait in the inbox.
func (in *inbox) count(ctx context.Context) (int64, error) {
	out, err := in.client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(in.url), AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages},
	})
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessages)], 10, 64)
}

// route is the broker's sink: every MQTT message goes through the rules bridge.
func (s *localStack) route(ctx context.Context, m broker.Message) {
	msg := &iotsql.Message{
		Topic: m.Topic, Payload: m.Payload, ClientID: m.ClientID, Principal: m.Principal,
		AccountID: moto.AccountID, Timestamp: m.Time,
	}
	results := s.bridge.Handle(ctx, msg)
	ran := false
	for _, r := range results {
		if r.Err != nil {
			s.unevaluated.Add(1)
			continue
		}
		ran = true
		s.failed.Add(int64(len(r.Failures)))
	}
	if ran {
		s.routed.Add(1)
	} else if len(results) == 0 {
		s.unrouted.Add(1)
	}
	if s.hooks.onRoute != nil {
		s.hooks.onRoute(m, ran)
	}
}

type republishFunc func(ctx context.Context, topic string, payload []byte, qos byte) error

func (f republishFunc) Republish(ctx context.Context, topic string, payload []byte, qos byte) error {
	return f(ctx, topic, payload, qos)
}

// useEndpoint points the SDK at an endpoint the user named. Credentials and region are left to the
// default chain when set, and otherwise get the emulator's conventional values.
func useEndpoint(endpoint string) {
	_ = os.Setenv("AWS_ENDPOINT_URL", endpoint) // fails only on a name with '=' or NUL, or a NUL in the value: not in argv
	if os.Getenv("AWS_ACCESS_KEY_ID") == "" && os.Getenv("AWS_PROFILE") == "" {
		_ = os.Setenv("AWS_ACCESS_KEY_ID", "testing")
		_ = os.Setenv("AWS_SECRET_ACCESS_KEY", "testing")
	}
	if os.Getenv("AWS_REGION") == "" && os.Getenv("AWS_DEFAULT_REGION") == "" {
		_ = os.Setenv("AWS_REGION", moto.Region)
	}
}

// applyLocalRules resolves the rule files for the emulator's account and region and makes the
// emulator's AWS IoT match them, as `thingpipe rules apply` does against AWS.
func applyLocalRules(ctx context.Context, cfg aws.Config, dir string, log *slog.Logger) ([]*rules.Rule, error) {
	files, err := rules.LoadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("loading rules: %w", err)
	}
	id, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		return nil, fmt.Errorf("finding the AWS account: %w", err)
	}
	resolved, err := rules.ResolveAll(files, rules.Env{Account: aws.ToString(id.Account), Region: cfg.Region})
	if err != nil {
		return nil, err
	}
	client := iot.NewFromConfig(cfg)
	plan, err := rules.MakePlan(ctx, client, resolved, rules.PlanOptions{})
	if err != nil {
		return nil, fmt.Errorf("planning rules: %w", err)
	}
	if err := plan.Apply(ctx, client, func(c rules.Change) {
		log.Info("topic rule applied", "rule", c.Name, "change", c.Kind)
	}); err != nil {
		return nil, fmt.Errorf("applying rules: %w", err)
	}
	log.Info("topic rules in place", "rules", len(resolved), "changed", plan.Count(rules.ChangeCreate)+plan.Count(rules.ChangeReplace))
	return resolved, nil
}

// watchRegistry stands in for AWS IoT registry events: a thing created through the emulator's IoT
// API (CreateThing) produces $aws/events/thing/<thing>/created, as AWS IoT does with registry events
// enabled. Things already announced are remembered, so each is announced once per run; a repeat after
// a restart is harmless, since provisioning is idempotent.
func watchRegistry(ctx context.Context, client *iot.Client, brk *broker.Broker, log *slog.Logger) {
	seen := map[string]bool{}
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		var next *string
		for {
			out, err := client.ListThings(ctx, &iot.ListThingsInput{NextToken: next})
			if err != nil {
				if ctx.Err() == nil {
					log.Warn("listing things for registry events", "err", err)
				}
				break
			}
			for _, th := range out.Things {
				name := aws.ToString(th.ThingName)
				if seen[name] {
					continue
				}
				if err := brk.PublishRegistryEvent(ctx, name, th.Attributes); err != nil {
					log.Warn("publishing registry event", "thing", name, "err", err)
					continue
				}
				seen[name] = true
			}
			if next = out.NextToken; next == nil {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func serveHTTP(addr string, h http.Handler, log *slog.Logger) (*http.Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening on --http-addr %s: %w", addr, err)
	}
	srv := &http.Server{Addr: l.Addr().String(), Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server", "err", err)
		}
	}()
	return srv, nil
}

func shutdownHTTP(srv *http.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
}

// localPipelineConfig is the stages' configuration for `thingpipe local`: the file given (with
// THINGPIPE_* overrides) or the defaults, pointed at the stack just deployed, with archive batches
// short enough to watch objects land.
func localPipelineConfig(path string, out deploy.Outputs) (pipeline.Config, error) {
	cfg, err := pipeline.Load(path, os.Environ())
	if err != nil {
		return cfg, withCode(2, err)
	}
	cfg.Stages = pipeline.AllStages()
	cfg.Resources.ArchiveBucket = out.ArchiveBucket
	if path == "" {
		cfg.Archival.MaxAge = pipeline.Duration(5 * time.Second)
		cfg.Kinesis.StartPosition = "TRIM_HORIZON"
		// Shutdown lets a long poll in progress finish (so no message is stranded invisible); a
		// short poll keeps Ctrl-C quick, and empty polls cost nothing against the local emulator.
		cfg.SQS.WaitTime = pipeline.Duration(3 * time.Second)
	}
	return cfg, cfg.Validate()
}

// runningStages is the pipeline running in the background, stopped on demand rather than with the
// command's context, so the broker can drain into the queues before the stages stop.
type runningStages struct {
	cancel  context.CancelFunc
	done    chan error
	release func()
}

func startStages(ctx context.Context, awsCfg aws.Config, cfg pipeline.Config, metrics *pipeline.Metrics,
	health *pipeline.Health, log *slog.Logger, onOutcome func(string, *message.Message, string)) (*runningStages, error) {
	p, release, err := buildPipeline(ctx, cfg, awsCfg, log, metrics, health, nil, onOutcome)
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r := &runningStages{cancel: cancel, done: make(chan error, 1), release: release}
	go func() { r.done <- p.Run(runCtx) }()
	return r, nil
}

// Stop shuts the stages down gracefully and waits for them, at most until ctx ends.
func (r *runningStages) Stop(ctx context.Context) error {
	r.cancel()
	select {
	case err := <-r.done:
		r.release()
		return err
	case <-ctx.Done():
		return fmt.Errorf("stages still stopping: %w", ctx.Err())
	}
}
