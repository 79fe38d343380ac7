// Package simulator drives a fleet of simulated devices and app users over real MQTT: registry events
// standing in for RegisterThing, one MQTT connection per device (client id = thing name), telemetry with
// anomalies and low batteries, and bind requests from app users. Given a seed it is reproducible,
// timestamps aside.
package simulator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/thingpipe/thingpipe/broker"
)

// RegistryClientID is the MQTT client id that publishes the registry events (standing in for AWS IoT's
// registry). App users connect as "app-<userId>".
const RegistryClientID = "thingpipe-sim-registry"

// Stats counts what the simulator did. Publishes count once acknowledged (QoS 1) or written (QoS 0).
type Stats struct {
	Devices        int
	Connected      int64 // devices whose first connection succeeded
	Registry       int64 // registry events published
	Telemetry      int64 // telemetry messages published
	Bind           int64 // bind requests published
	Anomalies      int64 // telemetry readings published with temperature above 80
	LowBattery     int64 // telemetry readings published with battery below 15
	ConnectErrors  int64 // failed connection attempts (each retry counts)
	PublishErrors  int64 // publishes that failed or timed out
	Elapsed        time.Duration
	TelemetryStart time.Time // when the first device began publishing telemetry
}

// Errors is the total of connect and publish errors.
func (s Stats) Errors() int64 { return s.ConnectErrors + s.PublishErrors }

// Simulator runs one fleet. Create it with New, then Run it once.
type Simulator struct {
	cfg     Config
	log     *slog.Logger
	server  *url.URL
	devices []Device
	users   []string

	started atomic.Int64 // UnixNano when Run began
	ran     atomic.Bool

	connected, registry, telemetry, bind, anomalies, lowBattery, connectErrs, publishErrs atomic.Int64
	telemetryStart                                                                        atomic.Int64
}

// New validates cfg and plans the fleet (names, attributes, binds) from its seed.
func New(cfg Config) (*Simulator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("simulator: %w", err)
	}
	if u.Scheme == "tcp" {
		u.Scheme = "mqtt"
	}
	devices, users := plan(cfg)
	return &Simulator{cfg: cfg, log: cfg.Logger.With("component", "simulator"), server: u, devices: devices, users: users}, nil
}

// Devices returns the planned devices (copies).
func (s *Simulator) Devices() []Device { return append([]Device(nil), s.devices...) }

// Users returns the app users' ids.
func (s *Simulator) Users() []string { return append([]string(nil), s.users...) }

// Stats reports the counters so far; safe to call while Run is running.
func (s *Simulator) Stats() Stats {
	st := Stats{
		Devices:       len(s.devices),
		Connected:     s.connected.Load(),
		Registry:      s.registry.Load(),
		Telemetry:     s.telemetry.Load(),
		Bind:          s.bind.Load(),
		Anomalies:     s.anomalies.Load(),
		LowBattery:    s.lowBattery.Load(),
		ConnectErrors: s.connectErrs.Load(),
		PublishErrors: s.publishErrs.Load(),
	}
	if t := s.started.Load(); t != 0 {
		st.Elapsed = time.Since(time.Unix(0, t))
	}
	if ts := s.telemetryStart.Load(); ts != 0 {
		st.TelemetryStart = time.Unix(0, ts)
	}
	return st
}

// Run publishes the registry events, connects every device and app user, publishes telemetry at
// Config.Rate for Config.Duration (or until ctx is done), sends the bind requests, then disconnects every
// client cleanly. It returns an error only when the fleet could not start (e.g. the broker is
// unreachable); individual failures are counted in Stats.
func (s *Simulator) Run(ctx context.Context) error {
	if !s.ran.CompareAndSwap(false, true) {
		return errors.New("simulator: Run called twice")
	}
	s.started.Store(time.Now().UnixNano())
	runCtx := ctx
	if s.cfg.Duration > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, s.cfg.Duration)
		defer cancel()
	}

	var clients clientSet
	defer clients.disconnectAll(s.cfg.ConnectTimeout)

	if !s.cfg.SkipRegistry {
		reg, err := s.connect(runCtx, RegistryClientID, &clients)
		if err != nil {
			return fmt.Errorf("simulator: registry client: %w", err)
		}
		for _, d := range s.devices {
			if runCtx.Err() != nil {
				return nil
			}
			ev := broker.NewThingCreatedEvent(s.cfg.AccountID, d.Name, d.EventID, d.Attributes, time.Now())
			s.publishJSON(reg, broker.ThingCreatedTopic(d.Name), ev, &s.registry)
		}
	}

	users := map[string]*autopaho.ConnectionManager{}
	for _, u := range s.users {
		cm, err := s.connect(runCtx, "app-"+u, &clients)
		if err != nil {
			if runCtx.Err() != nil {
				return nil
			}
			return fmt.Errorf("simulator: app user %s: %w", u, err)
		}
		users[u] = cm
	}

	interval := time.Duration(float64(len(s.devices)) / s.cfg.Rate * float64(time.Second))
	start := time.Now().Add(10 * time.Millisecond)
	sem := make(chan struct{}, s.cfg.ConnectConcurrency)
	var wg sync.WaitGroup
	for i, d := range s.devices {
		select {
		case sem <- struct{}{}:
		case <-runCtx.Done():
		}
		if runCtx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cm, err := s.connect(runCtx, d.Name, &clients)
			<-sem
			if err != nil {
				if runCtx.Err() == nil {
					s.log.Warn("device did not connect", "thing", d.Name, "error", err)
				}
				return
			}
			s.connected.Add(1)
			if d.BindUser != "" {
				req := map[string]string{"requestId": d.BindRequestID, "thingName": d.Name}
				s.publishJSON(users[d.BindUser], "app/"+d.BindUser+"/bind", req, &s.bind)
			}
			// Spread the devices' phases over one interval so the aggregate rate is smooth.
			offset := time.Duration(int64(interval) * int64(i) / int64(len(s.devices)))
			s.telemetryLoop(runCtx, cm, d, start.Add(offset), interval)
		}()
	}
	wg.Wait()
	if s.connected.Load() == 0 && ctx.Err() == nil {
		return fmt.Errorf("simulator: no device could connect to %s (%d failed attempts)", s.server, s.connectErrs.Load())
	}
	return nil
}

func (s *Simulator) telemetryLoop(ctx context.Context, cm *autopaho.ConnectionManager, d Device, next time.Time, interval time.Duration) {
	sens := newSensor(d, s.cfg.AnomalyChance)
	timer := time.NewTimer(time.Until(next))
	defer timer.Stop()
	topic := "dt/" + d.Name + "/telemetry"
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		s.telemetryStart.CompareAndSwap(0, time.Now().UnixNano())
		r := sens.next()
		r.TS = time.Now().UnixMilli()
		if s.publishJSON(cm, topic, r, &s.telemetry) {
			if r.Temperature > 80 {
				s.anomalies.Add(1)
			}
			if r.Battery < 15 {
				s.lowBattery.Add(1)
			}
		}
		// Next slot on the grid; if publishing fell behind, skip missed slots rather than burst.
		next = next.Add(interval)
		if now := time.Now(); next.Before(now) {
			next = next.Add(now.Sub(next).Truncate(interval) + interval)
		}
		timer.Reset(time.Until(next))
	}
}

// publishJSON publishes v and counts it in counter once acknowledged. It uses its own timeout rather
// than the run's context, so a publish under way when the run ends still completes and is counted.
func (s *Simulator) publishJSON(cm *autopaho.ConnectionManager, topic string, v any, counter *atomic.Int64) bool {
	payload, err := json.Marshal(v)
	if err != nil {
		s.publishErrs.Add(1)
		s.log.Error("encoding payload", "topic", topic, "error", err)
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.PublishTimeout)
	defer cancel()
	if err := cm.AwaitConnection(ctx); err != nil {
		s.publishErrs.Add(1)
		s.log.Warn("publish: not connected", "topic", topic, "error", err)
		return false
	}
	resp, err := cm.Publish(ctx, &paho.Publish{Topic: topic, QoS: s.cfg.QoS, Payload: payload})
	if err == nil && resp != nil && resp.ReasonCode >= 0x80 {
		err = fmt.Errorf("PUBACK reason code 0x%02x", resp.ReasonCode)
	}
	if err != nil {
		s.publishErrs.Add(1)
		s.log.Warn("publish failed", "topic", topic, "error", err)
		return false
	}
	counter.Add(1)
	return true
}

// connect opens an MQTT 5 connection (reconnecting on loss) and waits for it to be up.
func (s *Simulator) connect(ctx context.Context, clientID string, clients *clientSet) (*autopaho.ConnectionManager, error) {
	cfg := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{s.server},
		KeepAlive:                     uint16(s.cfg.KeepAlive / time.Second), // #nosec G115 -- Validate keeps KeepAlive within 1 s..65535 s
		CleanStartOnInitialConnection: true,
		ConnectTimeout:                s.cfg.ConnectTimeout,
		ReconnectBackoff:              autopaho.NewExponentialBackoff(100*time.Millisecond, 10*time.Second, time.Second, 2),
		OnConnectError: func(err error) {
			s.connectErrs.Add(1)
			s.log.Debug("connect attempt failed", "client", clientID, "error", err)
		},
		ClientConfig: paho.ClientConfig{ClientID: clientID},
	}
	// The connection outlives ctx: it is closed by clients.disconnectAll, with a DISCONNECT packet.
	cm, err := autopaho.NewConnection(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", clientID, err)
	}
	clients.add(cm)
	wait, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout)
	defer cancel()
	if err := cm.AwaitConnection(wait); err != nil {
		return nil, fmt.Errorf("connect %s to %s: %w", clientID, s.server, err)
	}
	return cm, nil
}

// clientSet remembers every connection so Run can close them all, cleanly, when it ends.
type clientSet struct {
	mu  sync.Mutex
	cms []*autopaho.ConnectionManager
}

func (c *clientSet) add(cm *autopaho.ConnectionManager) {
	c.mu.Lock()
	c.cms = append(c.cms, cm)
	c.mu.Unlock()
}

func (c *clientSet) disconnectAll(timeout time.Duration) {
	c.mu.Lock()
	cms := c.cms
	c.cms = nil
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, cm := range cms {
		wg.Go(func() { _ = cm.Disconnect(ctx) })
	}
	wg.Wait()
}
