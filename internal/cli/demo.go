package cli

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/common/version"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/flagwarden/flagwarden/internal/app"
	"github.com/flagwarden/flagwarden/internal/config"
	"github.com/flagwarden/flagwarden/internal/service"
	"github.com/flagwarden/flagwarden/internal/simulator"
)

// newDemoCmd runs every part of flagwarden on an embedded default: miniredis as the
// Celery broker and as the cache Redis, River on SQLite in a temporary directory, and
// a simulated fleet running in accelerated real time behind the same interfaces the
// real sources implement.
func newDemoCmd(env Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "demo [--speed N] [--listen ADDR] [--alertmanager URL] [--seed N]",
		Short: "run everything on an embedded default (no servers needed) with a simulated fleet",
		Args:  noArgs,
	}
	fs := cmd.Flags()
	speed := fs.Float64("speed", 60, "simulated seconds per real second")
	listen := fs.String("listen", "127.0.0.1:8080", "dashboard and API listen `address`")
	am := fs.String("alertmanager", "", "Alertmanager `URL` to page (default: dashboard only)")
	seed := fs.Uint64("seed", 1, "simulation seed: the same seed gives the same fleet and traffic")
	level := fs.String("log-level", "warn", "log `level` (debug, info, warn, error)")
	cmd.RunE = runBody(func(ctx context.Context, _ []string) int {
		d, err := startDemo(ctx, demoOptions{
			Speed: *speed, Listen: *listen, Alertmanager: *am, Seed: *seed,
			Logger: newLogger(config.Log{Level: *level, Format: "text"}, env.Stderr),
		})
		if err != nil {
			fmt.Fprintf(env.Stderr, "flagwarden demo: %v\n", err)
			return 1
		}
		d.describe(env.Stdout)
		<-ctx.Done()
		fmt.Fprintln(env.Stdout, "\nstopping…")
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
		defer cancel()
		if err := d.Stop(stopCtx); err != nil {
			fmt.Fprintf(env.Stderr, "flagwarden demo: %v\n", err)
			return 1
		}
		return 0
	})
	return cmd
}

// demoOptions are the demo's flags.
type demoOptions struct {
	Speed        float64
	Listen       string
	Alertmanager string
	Seed         uint64
	Logger       *slog.Logger
}

// demo is one running demo: the embedded servers, the simulation and the app.
type demo struct {
	opts   demoOptions
	app    *app.App
	live   *simulator.Live
	broker *miniredis.Miniredis
	cache  *miniredis.Miniredis
	dir    string
	alerts bool
	// ownQueue is flagwarden's Celery consumer queue.
	ownQueue string
	token    string // the operate token the banner prints
	closers  []func()
}

// startDemo starts the embedded Redis servers, the simulation and the app, and returns
// once the dashboard is being served.
func startDemo(ctx context.Context, o demoOptions) (d *demo, err error) {
	if o.Speed <= 0 || o.Speed > 10000 {
		return nil, fmt.Errorf("--speed must be between 0 and 10000, got %g", o.Speed)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	started := &demo{opts: o}
	d = started
	defer func() {
		if err != nil { // d is nil by then: every error path returns nil
			started.cleanup()
		}
	}()
	if d.dir, err = os.MkdirTemp("", "flagwarden-demo-"); err != nil {
		return nil, fmt.Errorf("temporary directory: %w", err)
	}
	if d.broker, err = miniredis.Run(); err != nil {
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	if d.cache, err = miniredis.Run(); err != nil {
		return nil, fmt.Errorf("embedded cache: %w", err)
	}
	cfg, err := demoConfig(o, "redis://"+d.broker.Addr(), "redis://"+d.cache.Addr())
	if err != nil {
		return nil, err
	}
	d.alerts = len(cfg.Alertmanager.URLs) > 0
	d.token = string(cfg.Auth.Tokens[0].Token)
	d.ownQueue = cfg.Rebuild.CeleryConsumer.Queue

	// The simulation writes through its own client; the app's collectors and Celery
	// consumer open theirs from the configuration, as they would against a real broker.
	simRedis := redis.NewClient(&redis.Options{Addr: d.broker.Addr()})
	d.closers = append(d.closers, func() { simRedis.Close() })
	d.live, err = simulator.NewLive(ctx, simulator.LiveOptions{
		Sim:   simulator.Options{Seed: o.Seed},
		Speed: o.Speed, Redis: simRedis,
		Sep: cfg.Broker.Sep, Steps: cfg.Broker.PrioritySteps,
		CopyTo: []string{cfg.Rebuild.CeleryConsumer.Queue},
		Logger: o.Logger.With("component", "simulator"),
	})
	if err != nil {
		return nil, err
	}
	d.app, err = app.New(ctx, app.Options{
		Config: cfg, Logger: o.Logger, Version: version.Version, ReplicaID: "demo",
		Embedded: &app.Embedded{
			SQLitePath: filepath.Join(d.dir, "flagwarden.db"),
			Teams:      simulator.TeamSource{L: d.live},
			Pods:       simulator.PodSource{L: d.live},
			PodMemory:  simulator.PodSource{L: d.live},
			Flags:      simulator.FlagSource{L: d.live},
			Clock:      d.live.Clock(),
			// first to start, last to stop: the sources read it.
			Services: []service.Service{d.live},
		},
	})
	if err != nil {
		return nil, err
	}
	if err := d.app.Start(ctx); err != nil {
		_ = d.app.Stop(context.WithoutCancel(ctx))
		d.app = nil
		return nil, err
	}
	return d, nil
}

// demoConfig is the configuration the demo runs with: the defaults, pointed at the
// embedded servers, with every loop interval and wall-clock window divided by the
// speed so that the collectors sample the simulated fleet as often, in simulated time,
// as they would sample a real one. The detectors' windows need no scaling: the
// collectors, the detectors and the API all run on the simulated clock.
func demoConfig(o demoOptions, brokerURL, cacheURL string) (config.Config, error) {
	cfg := config.Default()
	cfg.Broker.URL = config.URL(brokerURL)
	cfg.Cache.URL = config.URL(cacheURL)
	cfg.HTTP.Listen = o.Listen
	cfg.Auth.OpenReads = true
	// An operate token of this run, printed in the banner, so quarantine, release and rebuild can be tried.
	cfg.Auth.Tokens = []config.Token{{Name: "demo-operator", Token: config.Secret("demo-" + rand.Text()), Role: config.RoleOperate}}
	// The Celery consumer stamps and restores its deliveries on the simulated clock, as
	// the simulated workers do; a delivery stays in flight for some real time however
	// fast the simulation runs, so the timeout is at least a minute of real time.
	cfg.Broker.VisibilityTimeout = max(cfg.Broker.VisibilityTimeout, time.Duration(60*o.Speed)*time.Second)
	cfg.Kubernetes.Enabled = false
	cfg.Kubernetes.Namespace = "posthog" // the simulated pods' namespace
	if o.Alertmanager != "" {
		cfg.Alertmanager.URLs = []string{o.Alertmanager}
	}
	scale := func(l config.Loop) config.Loop {
		l.Interval = max(time.Duration(float64(l.Interval)/o.Speed), 500*time.Millisecond)
		l.Timeout = max(time.Duration(float64(l.Timeout)/o.Speed), l.Interval*9/10)
		return l
	}
	c := &cfg.Collectors
	c.Celery, c.Pods, c.Caches, c.Teams.Loop = scale(c.Celery), scale(c.Pods), scale(c.Caches), scale(c.Teams.Loop)
	cfg.Detectors.Loop = scale(cfg.Detectors.Loop)
	// A collector is down after a few missed passes in real time, however fast the
	// simulation runs: a busy laptop must not look like a broken collector.
	cfg.Detectors.CollectorDownAfter = max(cfg.Detectors.CollectorDownAfter, time.Duration(30*o.Speed)*time.Second)

	r := &cfg.Rebuild
	// flagwarden takes its own copy of every cache task from its own queue, and the
	// naive workers keep the original queue: both pipelines run on the same traffic.
	r.CeleryConsumer.Enabled = true
	r.Notify.Enabled = false
	// The stale sweep runs as in serve, as often in simulated time (but at most every
	// 5 s: a pass requests every team it finds behind): builds and changes are on the
	// one simulated clock.
	r.SweepInterval = max(time.Duration(float64(r.SweepInterval)/o.Speed), 5*time.Second)
	// The test-automation team's half a gigabyte of cohorts is exactly what flagwarden
	// holds back: above this limit a team is quarantined and waits for an operator
	// instead of being built.
	r.HardLimitBytes = 256 << 20
	r.LargeTeamBytes = 8 << 20
	r.QuarantineMode = "hold"
	r.MemoryBudget = 256 << 20
	cfg.Log.Level = "warn"
	return cfg, nil
}

// describe prints where to look and what will happen when.
func (d *demo) describe(w io.Writer) {
	speed := d.opts.Speed
	first, every := d.live.Forecast()
	real := func(sim time.Duration) string {
		return (time.Duration(float64(sim) / speed)).Round(time.Second).String()
	}
	page := "on the dashboard"
	if d.alerts {
		page = "on the dashboard and in Alertmanager at " + d.opts.Alertmanager
	}
	fmt.Fprintf(w, `flagwarden demo %s: a simulated fleet of 2,000 teams at %gx speed (seed %d)
  dashboard   http://%s/
  API         http://%s/api/v1/queues   /api/v1/teams   /api/v1/findings   /api/v1/rebuilds
  metrics     http://%s/metrics
  token       %s (operate: paste it with the dashboard's Token button to quarantine, release, rebuild)
  broker      redis://%s (Celery queues %q and %q)   cache redis://%s

What happens (simulated time; real time in brackets):
  - Team %d is an internal test-automation account: every 30 min [%s] a test run saves
    40 flags and 20 cohorts of 64 KiB, and nothing is ever cleaned up.
  - Within seconds flagwarden's team pass measures it and the detectors raise an
    outlier finding for team %d (%s). Its rebuild engine, fed
    from its own Celery queue, quarantines the team (payload above the hard limit) and
    keeps building every other team's caches (Rebuilds page).
  - The simulated Celery workers (4 pods, 8 GiB limit) build naively from the original
    queue. Their first OOM kills can come after about %s [%s]; after about %s [%s]
    every build of team %d is killed, the pods crash-loop with Kubernetes' back-off and
    the %q queue backs up: watch the worker and backlog findings follow.

Ctrl-C stops the demo and removes its temporary files.
`, version.Version, speed, d.opts.Seed,
		d.app.Addr(), d.app.Addr(), d.app.Addr(), d.token,
		d.broker.Addr(), d.live.Queue(), d.ownQueue, d.cache.Addr(),
		d.live.TestTeam(), real(30*time.Minute),
		d.live.TestTeam(), page,
		roundSim(first), real(first), roundSim(every), real(every), d.live.TestTeam(), d.live.Queue())
}

// roundSim formats a simulated duration as days and hours.
func roundSim(d time.Duration) string {
	if d <= 0 {
		return "never"
	}
	h := int(d.Round(time.Hour).Hours())
	if h < 24 {
		return fmt.Sprintf("%dh", h)
	}
	return fmt.Sprintf("%dd %dh", h/24, h%24)
}

// Addr is the dashboard's address.
func (d *demo) Addr() string { return d.app.Addr() }

// Stop stops the app (which stops the simulation last) and removes the embedded
// servers and the temporary directory.
func (d *demo) Stop(ctx context.Context) error {
	var err error
	if d.app != nil {
		err = d.app.Stop(ctx)
	}
	d.cleanup()
	return err
}

func (d *demo) cleanup() {
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
	d.closers = nil
	if d.broker != nil {
		d.broker.Close()
	}
	if d.cache != nil {
		d.cache.Close()
	}
	if d.dir != "" {
		os.RemoveAll(d.dir)
	}
}
