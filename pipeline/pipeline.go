package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Options configures a Pipeline. Zero values take the defaults noted.
type Options struct {
	Logger  *slog.Logger // default slog.Default()
	Metrics *Metrics     // default NewMetrics()
	Health  *Health      // default NewHealth(HealthOptions{Metrics: Metrics})
	// TracerProvider starts one span per delivery (default: a no-op provider, which still passes an
	// incoming traceparent on).
	TracerProvider trace.TracerProvider
	// ShutdownTimeout bounds everything shutdown does (default 30s).
	ShutdownTimeout time.Duration
	// OnOutcome, if set, is called once per delivery when its outcome is known (OutcomeAcked,
	// OutcomeNacked or OutcomeDeadLettered), before the source is acked or nacked. It runs on the
	// handler's goroutine, so it must be quick and safe for concurrent use; it must not keep msg.
	// thingpipe bench uses it to measure end-to-end latency.
	OnOutcome func(stage string, msg *message.Message, outcome string)
}

// Pipeline runs a set of stages, each in its own watermill router, until its context ends.
type Pipeline struct {
	opts   Options
	log    *slog.Logger
	stages []Stage
}

// New checks the stages and returns a Pipeline that runs them.
func New(opts Options, stages ...Stage) (*Pipeline, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics()
	}
	if opts.Health == nil {
		opts.Health = NewHealth(HealthOptions{Metrics: opts.Metrics})
	}
	if opts.TracerProvider == nil {
		opts.TracerProvider = noop.NewTracerProvider()
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = 30 * time.Second
	}
	if len(stages) == 0 {
		return nil, errors.New("pipeline: no stages")
	}
	var errs []error
	seen := map[string]bool{}
	for i, s := range stages {
		s = s.withDefaults()
		if err := s.validate(); err != nil {
			errs = append(errs, err)
		}
		if seen[s.Name] {
			errs = append(errs, fmt.Errorf("stage %q: listed twice", s.Name))
		}
		seen[s.Name] = true
		stages[i] = s
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("pipeline: %w", err)
	}
	for _, s := range stages {
		opts.Health.ExpectStage(s.Name)
		opts.Metrics.initStage(s.Name)
	}
	return &Pipeline{opts: opts, log: opts.Logger, stages: stages}, nil
}

// Metrics returns the pipeline's metrics.
func (p *Pipeline) Metrics() *Metrics { return p.opts.Metrics }

// Health returns the pipeline's health.
func (p *Pipeline) Health() *Health { return p.opts.Health }

// Run runs every stage until ctx ends (SIGINT/SIGTERM) or a stage stops on its own, then shuts all
// of them down gracefully. Shutdown, per stage and in parallel, within the shutdown timeout:
//
//  1. stop receiving (nothing new enters a handler; retry waits are abandoned and nacked);
//  2. call the stage's Drain hook, so handlers waiting on a batch can finish;
//  3. wait for in-flight handlers to return and their messages to be acked or nacked;
//  4. close the subscriber (flushes SQS deletes / Kinesis checkpoints, releases leases);
//  5. call the stage's Close hook.
//
// When the timeout runs out, the message contexts of handlers still running are cancelled.
// Run returns nil after a clean shutdown on ctx's end, and an error if a stage failed to start or
// stopped on its own, or if shutdown did not finish in time.
func (p *Pipeline) Run(ctx context.Context) error {
	// The routers get a context that outlives ctx: cancelling the subscriptions' context would also
	// cancel in-flight messages, and shutdown must let those finish first. hardStop ends it.
	hardStop, cancelHard := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHard()

	runners := make([]*stageRunner, 0, len(p.stages))
	for _, s := range p.stages {
		r, err := p.newStageRunner(s, hardStop)
		if err != nil {
			return err
		}
		runners = append(runners, r)
	}

	type exit struct {
		r   *stageRunner
		err error
	}
	exits := make(chan exit, len(runners))
	var wg sync.WaitGroup
	for _, r := range runners {
		wg.Go(func() {
			err := r.router.Run(hardStop)
			close(r.exited)
			exits <- exit{r, err}
		})
		wg.Go(func() {
			select {
			case <-r.router.Running():
				r.setState(stageRunning)
				p.log.Info("stage running", slog.String("stage", r.stage.Name), slog.String("topic", r.stage.Topic),
					slog.Int("concurrency", r.stage.Concurrency))
			case <-r.exited:
			}
		})
	}

	var runErr error
	select {
	case <-ctx.Done():
		p.log.Info("shutting down", slog.Duration("timeout", p.opts.ShutdownTimeout))
	case e := <-exits:
		e.r.setState(stageNotRunning)
		if err := errors.Join(e.err, e.r.gate.subscribeErr()); err != nil {
			runErr = fmt.Errorf("pipeline: stage %s: %w", e.r.stage.Name, err)
		} else {
			runErr = fmt.Errorf("pipeline: stage %s stopped: its subscription ended", e.r.stage.Name)
		}
		p.log.Error("stage stopped, shutting down the others", slog.String("error", runErr.Error()))
		exits <- e // keep the count for the drain below
	}

	for _, r := range runners {
		r.setState(stageStopping)
	}
	shutdownCtx, cancelShutdown := context.WithTimeout(context.WithoutCancel(ctx), p.opts.ShutdownTimeout)
	defer cancelShutdown()
	shutdownErrs := make([]error, len(runners))
	var sw sync.WaitGroup
	for i, r := range runners {
		sw.Go(func() { shutdownErrs[i] = r.shutdown(shutdownCtx) })
	}
	sw.Wait()
	cancelHard()
	for range runners {
		e := <-exits
		e.r.setState(stageNotRunning)
	}
	wg.Wait()

	err := errors.Join(append([]error{runErr}, shutdownErrs...)...)
	if err != nil {
		p.log.Error("pipeline stopped with errors", slog.String("error", err.Error()))
	} else {
		p.log.Info("pipeline stopped")
	}
	return err
}

// setState moves the stage's reported state forward only: running → stopping → not running. A late
// "running" (its goroutine scheduled after shutdown began) never overrides stopping or stopped.
func (r *stageRunner) setState(state string) {
	r.stateMu.Lock()
	defer r.stateMu.Unlock()
	rank := map[string]int{"": 0, stageRunning: 1, stageStopping: 2, stageNotRunning: 3}
	if rank[state] <= rank[r.state] {
		return
	}
	if state == stageStopping && r.state == "" {
		return // never ran: it stays "not running"
	}
	r.state = state
	switch state {
	case stageRunning:
		r.health.SetRunning(r.stage.Name, true)
	case stageStopping:
		r.health.SetStopping(r.stage.Name)
	default:
		r.health.SetRunning(r.stage.Name, false)
	}
	r.metrics.setStageUp(r.stage.Name, state == stageRunning)
}

// stageRunner is one stage's router and the state its middleware shares.
type stageRunner struct {
	stage     Stage
	router    *message.Router
	gate      *gate
	log       *slog.Logger
	metrics   *Metrics
	tracer    trace.Tracer
	hardStop  context.Context
	stopping  chan struct{} // closed when shutdown starts
	exited    chan struct{} // closed when router.Run returned
	health    *Health
	onOutcome func(stage string, msg *message.Message, outcome string) // nil: none
	// outageNacks excuses, from max_receives, deliveries nacked because a dependency was down.
	outageNacks *outageNacks

	stateMu sync.Mutex
	state   string // what setState last reported
}

func (p *Pipeline) newStageRunner(s Stage, hardStop context.Context) (*stageRunner, error) {
	log := p.log.With(slog.String("stage", s.Name))
	// Watermill's own info logs (handler added, router started) are debug detail here, and its
	// "Handler returned error" repeats the nack that observe already logs with more context.
	wlog := watermill.NewSlogLoggerWithLevelMapping(log.With(slog.String("component", "watermill")),
		map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug, slog.LevelError: slog.LevelWarn})
	// The shutdown deadline is enforced by shutdown(); the router's own timeout is only a backstop
	// for handlers that ignore their cancelled context, so that Run still returns.
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: p.opts.ShutdownTimeout + 5*time.Second}, wlog)
	if err != nil {
		return nil, fmt.Errorf("pipeline: stage %s: %w", s.Name, err)
	}
	r := &stageRunner{
		stage:     s,
		router:    router,
		gate:      newGate(s.Subscriber, hardStop),
		log:       log,
		metrics:   p.opts.Metrics,
		tracer:    p.opts.TracerProvider.Tracer("github.com/thingpipe/thingpipe/pipeline"),
		hardStop:  hardStop,
		stopping:  make(chan struct{}),
		exited:    make(chan struct{}),
		health:    p.opts.Health,
		onOutcome: p.opts.OnOutcome,

		outageNacks: newOutageNacks(outageNacksLimit),
	}
	router.AddMiddleware(r.middlewares()...)
	for i := range s.Concurrency {
		router.AddConsumerHandler(fmt.Sprintf("%s#%d", s.HandlerName, i), s.Topic, r.gate, s.Handler)
	}
	return r, nil
}

// shutdown stops the stage in the order Run documents. It returns what went wrong, if anything.
func (r *stageRunner) shutdown(ctx context.Context) error {
	start := time.Now()
	var errs []error
	close(r.stopping)
	_ = r.gate.Close() // stop receiving now; router.Close will call it again, harmlessly

	// Closing a router that has not finished starting deadlocks it until its close timeout (Close
	// holds the lock RunHandlers needs, waiting for handlers that cannot start), so wait for it.
	closed := make(chan error, 1)
	select {
	case <-r.router.Running():
		go func() { closed <- r.router.Close() }()
	case <-r.exited: // stopped on its own
		closed <- nil
	case <-ctx.Done():
		closed <- errors.New("router still starting at the shutdown deadline")
	}

	if r.stage.Drain != nil {
		if err := r.stage.Drain(ctx); err != nil {
			errs = append(errs, fmt.Errorf("drain: %w", err))
		}
	}
	select {
	case err := <-closed:
		if err != nil {
			errs = append(errs, fmt.Errorf("waiting for in-flight messages: %w", err))
		}
	case <-ctx.Done():
		errs = append(errs, errors.New("in-flight messages did not finish within the shutdown timeout"))
	}
	r.gate.wait()

	if err := within(ctx, r.stage.Subscriber.Close); err != nil {
		errs = append(errs, fmt.Errorf("closing subscriber: %w", err))
	}
	if r.stage.Close != nil {
		if err := r.stage.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("close: %w", err))
		}
	}
	err := errors.Join(errs...)
	if err != nil {
		err = fmt.Errorf("stage %s shutdown: %w", r.stage.Name, err)
	}
	r.log.Info("stage stopped", slog.Duration("took", time.Since(start)), slog.Bool("clean", err == nil))
	return err
}

// within runs f, giving up waiting for it when ctx ends (f keeps running; a Close that ignores
// every deadline is the subscriber's bug, and must not hold the process).
func within(ctx context.Context, f func() error) error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("gave up waiting: %w", ctx.Err())
	}
}

// gate sits between the router and the stage's subscriber, for two reasons:
//
//   - Closing it stops deliveries into the router at once without closing the subscriber, which the
//     Pipeline closes only after in-flight messages have been acked (watermill's router closes the
//     subscriber first, and an SQS delete or Kinesis checkpoint for a message finishing after that
//     would be lost).
//   - It subscribes with its own context, not the router's: the router cancels the subscription
//     context as soon as it starts closing, and subscribers derive message contexts from it, which
//     would cancel the I/O of the very handlers shutdown is waiting for.
//
// A failed Subscribe is recorded and turned into an ended subscription, because watermill's router
// leaks a goroutine when Subscribe fails during Run.
type gate struct {
	inner message.Subscriber
	ctx   context.Context
	stop  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup

	mu  sync.Mutex
	err error
}

func newGate(inner message.Subscriber, ctx context.Context) *gate {
	return &gate{inner: inner, ctx: ctx, stop: make(chan struct{})}
}

func (g *gate) Subscribe(routerCtx context.Context, topic string) (<-chan *message.Message, error) {
	out := make(chan *message.Message)
	in, err := g.inner.Subscribe(g.ctx, topic)
	if err != nil {
		g.mu.Lock()
		if g.err == nil {
			g.err = fmt.Errorf("subscribing to %s: %w", topic, err)
		}
		g.mu.Unlock()
		close(out)
		return out, nil
	}
	g.wg.Go(func() {
		defer close(out)
		for {
			select {
			case <-g.stop:
				return
			case <-routerCtx.Done():
				return
			case msg, ok := <-in:
				if !ok {
					return
				}
				select {
				case <-g.stop:
					msg.Nack() // taken but not started: hand it back
					return
				default:
				}
				select {
				case out <- msg:
				case <-g.stop:
					msg.Nack()
					return
				}
			}
		}
	})
	return out, nil
}

// receivingStopper is a subscriber that can stop taking messages from its source while the ones it
// handed out are still being worked on (pipeline/sqs: StopReceiving).
type receivingStopper interface{ StopReceiving() }

// Close stops deliveries, and receiving if the subscriber can stop that alone; it does not close
// the subscriber.
func (g *gate) Close() error {
	g.once.Do(func() {
		close(g.stop)
		if rs, ok := g.inner.(receivingStopper); ok {
			rs.StopReceiving()
		}
	})
	return nil
}

func (g *gate) wait() { g.wg.Wait() }

// subscribeErr is the first Subscribe error, if any.
func (g *gate) subscribeErr() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}
