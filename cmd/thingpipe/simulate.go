package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/thingpipe/thingpipe/simulator"
)

func newSimulateCmd() *cobra.Command {
	var (
		cfg          simulator.Config
		qos          uint8
		progress     time.Duration
		bindFraction float64
		verbose      bool
	)
	cmd := &cobra.Command{
		Use:   "simulate",
		Short: "Run a fleet of simulated devices and app users against an MQTT broker",
		Long: `simulate connects N simulated devices (sim-XXXX, client id = thing name) to an MQTT broker.
For each device it publishes the AWS IoT registry event $aws/events/thing/<thing>/created (standing in
for RegisterThing; --skip-registry to skip), connects it, and publishes telemetry JSON to
dt/<thing>/telemetry at an aggregate --rate, with occasional temperature spikes above 80 and some
batteries running below 15. App users publish bind requests to app/<userId>/bind for a share of the
devices once they are connected. Everything but timestamps is reproducible from --seed.

--duration 0 runs until Ctrl-C. Progress goes to stderr every --progress, and a summary at the end.`,
		Example: `  thingpipe simulate --devices 50 --rate 100 --duration 1m
  thingpipe simulate --mqtt mqtt://127.0.0.1:1883 --devices 5 --rate 5 --seed 7 --skip-registry`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.QoS, cfg.QoSSet = qos, true
			if bindFraction == 0 {
				cfg.NoBind = true
			} else {
				cfg.BindFraction = bindFraction
			}
			stderr := cmd.ErrOrStderr()
			level := slog.LevelWarn
			if verbose {
				level = slog.LevelDebug
			}
			cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
			sim, err := simulator.New(cfg)
			if err != nil {
				return withCode(2, err)
			}
			return runSimulation(cmd.Context(), sim, stderr, progress)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.URL, "mqtt", simulator.DefaultURL, "MQTT broker URL (mqtt://host:port)")
	f.IntVar(&cfg.Devices, "devices", 10, "number of simulated devices")
	f.Float64Var(&cfg.Rate, "rate", 10, "aggregate telemetry rate, messages per second across all devices")
	f.DurationVar(&cfg.Duration, "duration", 0, "how long to publish telemetry (0 = until Ctrl-C)")
	f.Uint64Var(&cfg.Seed, "seed", 1, "seed for names, attributes, binds and readings")
	f.StringVar(&cfg.Prefix, "prefix", "sim-", "thing name prefix")
	f.BoolVar(&cfg.SkipRegistry, "skip-registry", false, "do not publish $aws/events/thing/<thing>/created events")
	f.Float64Var(&bindFraction, "bind-fraction", 0.5, "share of devices that app users ask to bind (0 = none)")
	f.IntVar(&cfg.Users, "users", 0, "number of app users (0 = a quarter of the bound devices)")
	f.Uint8Var(&qos, "qos", 1, "QoS of every publish (0 or 1)")
	f.Float64Var(&cfg.AnomalyChance, "anomaly-chance", 0.01, "chance per reading that a temperature spike starts (negative = never)")
	f.Float64Var(&cfg.LowBatteryFraction, "low-battery", 0.1, "share of devices whose battery runs below 15 (negative = none)")
	f.StringVar(&cfg.AccountID, "account-id", "123456789012", "account id in registry events")
	f.DurationVar(&progress, "progress", 5*time.Second, "how often to print progress to stderr (0 = never)")
	f.BoolVar(&verbose, "verbose", false, "log every connection attempt")
	return cmd
}

func runSimulation(ctx context.Context, sim *simulator.Simulator, out io.Writer, every time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- sim.Run(ctx) }()

	var tick <-chan time.Time
	if every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}
	var last simulator.Stats
	for {
		select {
		case err := <-done:
			st := sim.Stats()
			avg := ""
			if !st.TelemetryStart.IsZero() {
				if secs := time.Since(st.TelemetryStart).Seconds(); secs > 0 {
					avg = fmt.Sprintf(", telemetry averaged %.1f/s", float64(st.Telemetry)/secs)
				}
			}
			fmt.Fprintf(out, "simulate: done in %s: %s%s\n", st.Elapsed.Round(time.Millisecond), summary(st), avg)
			if err != nil {
				return err
			}
			if st.PublishErrors > 0 {
				return fmt.Errorf("simulate: %d publishes failed", st.PublishErrors)
			}
			return nil
		case <-tick:
			st := sim.Stats()
			rate := float64(st.Telemetry-last.Telemetry) / every.Seconds()
			fmt.Fprintf(out, "simulate: %s: %s, telemetry now %.1f/s\n", st.Elapsed.Round(min(every, time.Second)), summary(st), rate)
			last = st
		}
	}
}

func summary(st simulator.Stats) string {
	return fmt.Sprintf("%d/%d devices connected, registry %d, telemetry %d (anomalies %d, low battery %d), bind %d, errors %d (connect %d, publish %d)",
		st.Connected, st.Devices, st.Registry, st.Telemetry, st.Anomalies, st.LowBattery, st.Bind,
		st.Errors(), st.ConnectErrors, st.PublishErrors)
}
