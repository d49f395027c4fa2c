// Package notifier pages through Prometheus Alertmanager the way Prometheus does: every
// firing finding is posted to every configured Alertmanager and re-sent each resend
// interval with endsAt ahead of now; a resolved finding is posted with endsAt = its
// resolution time and re-sent for a retention period. Each Alertmanager has its own
// bounded queue (drop-oldest, counted), batches and retries with backoff, so one that is
// down receives every still-relevant alert when it returns.
package notifier

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-openapi/strfmt"
	"github.com/prometheus/alertmanager/api/v2/models"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/flagwarden/flagwarden/detectors"
	"github.com/flagwarden/flagwarden/internal/alertname"
	"github.com/flagwarden/flagwarden/internal/notifier/defaults"
)

// Options configures the notifier.
type Options struct {
	// URLs are the Alertmanagers; each receives every alert.
	URLs []string
	// Username and Password enable basic auth; BearerToken bearer auth.
	Username    string
	Password    string
	BearerToken string
	// Timeout bounds one POST (default 10s).
	Timeout time.Duration
	// ResendInterval is how often firing alerts are re-sent (default 1m); their endsAt
	// is set 4 intervals ahead so that two missed sends do not resolve them.
	ResendInterval time.Duration
	// ResolvedRetention is how long resolved alerts keep being re-sent (default 15m).
	ResolvedRetention time.Duration
	// QueueCapacity bounds each Alertmanager's queue (default 10000).
	QueueCapacity int
	// BatchSize is the most alerts one POST carries (default 64).
	BatchSize int
	// MaxBackoff caps the wait between retries (default the resend interval).
	MaxBackoff time.Duration

	Client     *http.Client
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// DefaultOptions are the settings the notifier uses where Options leave a field unset.
func DefaultOptions() Options {
	var o Options
	o.applyDefaults()
	return o
}

func (o *Options) applyDefaults() {
	o.Timeout = cmp.Or(o.Timeout, defaults.Timeout)
	o.ResendInterval = cmp.Or(o.ResendInterval, defaults.ResendInterval)
	o.ResolvedRetention = cmp.Or(o.ResolvedRetention, defaults.ResolvedRetention)
	o.QueueCapacity = cmp.Or(o.QueueCapacity, defaults.QueueCapacity)
	o.BatchSize = cmp.Or(o.BatchSize, defaults.BatchSize)
	o.MaxBackoff = cmp.Or(o.MaxBackoff, o.ResendInterval)
	if o.Client == nil {
		o.Client = &http.Client{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

func (o *Options) validate() error {
	var errs []error
	for i, u := range o.URLs {
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			errs = append(errs, fmt.Errorf("notifier: URLs[%d] must be an http(s) URL, got %q", i, u))
		}
	}
	if o.BearerToken != "" && o.Username != "" {
		errs = append(errs, errors.New("notifier: BearerToken cannot be combined with Username"))
	}
	if o.Timeout <= 0 || o.ResendInterval <= 0 || o.ResolvedRetention <= 0 {
		errs = append(errs, errors.New("notifier: Timeout, ResendInterval and ResolvedRetention must be positive"))
	}
	if o.QueueCapacity < 1 || o.BatchSize < 1 {
		errs = append(errs, errors.New("notifier: QueueCapacity and BatchSize must be at least 1"))
	}
	return errors.Join(errs...)
}

type metrics struct {
	sent    *prometheus.CounterVec
	errors  *prometheus.CounterVec
	dropped prometheus.Counter
	latency *prometheus.HistogramVec
}

// sentState is what was last sent for one finding.
type sentState struct {
	key      string // label set key
	at       time.Time
	resolved bool
}

// retired is an alert whose label set changed (its severity moved): the old label set
// is resolved and re-sent as resolved for the retention.
type retired struct {
	alert *models.PostableAlert
	until time.Time
}

// Notifier implements service.Service and detectors.Pager.
type Notifier struct {
	opts    Options
	logger  *slog.Logger
	metrics *metrics
	targets []*target

	mu      sync.Mutex
	sent    map[string]sentState
	current map[string]*models.PostableAlert // by label key: what a resync sends
	retired map[string]retired

	runMu  sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// New returns a notifier; nothing is sent until Start.
func New(opts Options) (*Notifier, error) {
	opts.applyDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	f := promauto.With(opts.Registerer)
	n := &Notifier{
		opts: opts, logger: opts.Logger.With("component", "notifier"),
		sent: map[string]sentState{}, current: map[string]*models.PostableAlert{}, retired: map[string]retired{},
		metrics: &metrics{
			sent: f.NewCounterVec(prometheus.CounterOpts{
				Name: "flagwarden_notifier_alerts_sent_total",
				Help: "Alerts accepted by each Alertmanager.",
			}, []string{"alertmanager"}),
			errors: f.NewCounterVec(prometheus.CounterOpts{
				Name: "flagwarden_notifier_errors_total",
				Help: "Failed POSTs to each Alertmanager.",
			}, []string{"alertmanager"}),
			dropped: f.NewCounter(prometheus.CounterOpts{
				Name: "flagwarden_notifier_dropped_total",
				Help: "Alerts dropped because a queue was full (oldest first) or an Alertmanager rejected them.",
			}),
			latency: f.NewHistogramVec(prometheus.HistogramOpts{
				Name:    "flagwarden_notifier_latency_seconds",
				Help:    "Time one POST to an Alertmanager took.",
				Buckets: prometheus.ExponentialBuckets(0.005, 3, 9),
			}, []string{"alertmanager"}),
		},
	}
	for i, raw := range opts.URLs {
		u, _ := url.Parse(raw)
		name := u.Host
		if name == "" {
			name = strconv.Itoa(i)
		}
		u.Path = strings.TrimSuffix(u.Path, "/") + "/api/v2/alerts"
		n.targets = append(n.targets, &target{n: n, name: name, url: u.String(), wake: make(chan struct{}, 1), items: map[string]*models.PostableAlert{}})
	}
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "flagwarden_notifier_queue_length",
		Help: "Alerts waiting to be sent, over every Alertmanager's queue.",
	}, func() float64 {
		total := 0
		for _, t := range n.targets {
			total += t.len()
		}
		return float64(total)
	})
	return n, nil
}

// Name implements service.Service.
func (n *Notifier) Name() string { return "notifier" }

// labelKey identifies a label set: Alertmanager deduplicates on it.
func labelKey(l map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(l)) {
		b.WriteString(k + "=" + strconv.Quote(l[k]) + ",")
	}
	return b.String()
}

// Alert converts a finding to the Alertmanager v2 type at now.
func (n *Notifier) Alert(f detectors.Finding, now time.Time) *models.PostableAlert {
	labels := models.LabelSet{}
	maps.Copy(labels, f.Labels)
	// Alertmanager sees the prefixed CamelCase alertname the Prometheus rules use too;
	// kind keeps the finding's API name for routes and links.
	labels["alertname"] = alertname.For(f.Kind)
	labels["kind"] = f.Kind
	ann := models.LabelSet{"summary": f.Summary, "description": f.Description}
	if f.RunbookURL != "" {
		ann["runbook_url"] = f.RunbookURL
	}
	if len(f.Evidence) > 0 {
		parts := make([]string, 0, len(f.Evidence))
		for _, k := range slices.Sorted(maps.Keys(f.Evidence)) {
			parts = append(parts, k+"="+strconv.FormatFloat(f.Evidence[k], 'g', 6, 64))
		}
		ann["evidence"] = strings.Join(parts, " ")
	}
	starts := f.FiredAt
	if starts.IsZero() {
		starts = f.ActiveAt
	}
	ends := now.Add(4 * n.opts.ResendInterval)
	if f.State == detectors.StateResolved {
		ends = f.ResolvedAt
	}
	return &models.PostableAlert{
		Annotations: ann,
		StartsAt:    strfmt.DateTime(starts),
		EndsAt:      strfmt.DateTime(ends),
		Alert:       models.Alert{Labels: labels, GeneratorURL: strfmt.URI(f.GeneratorURL)},
	}
}

// Update takes every finding Alertmanager should know of (firing, and resolved within
// the retention) and queues what is new, changed or due for a resend.
func (n *Notifier) Update(now time.Time, relevant []detectors.Finding) {
	n.mu.Lock()
	var out []*models.PostableAlert
	seen := map[string]bool{}
	current := map[string]*models.PostableAlert{}
	for _, f := range relevant {
		if f.State == detectors.StatePending {
			continue
		}
		a := n.Alert(f, now)
		key := labelKey(f.Labels)
		seen[f.ID] = true
		current[key] = a
		st, ok := n.sent[f.ID]
		if ok && st.key != key && !st.resolved {
			// The label set changed (severity): resolve the old one explicitly.
			if old := n.current[st.key]; old != nil {
				r := *old
				r.EndsAt = strfmt.DateTime(now)
				n.retired[st.key] = retired{alert: &r, until: now.Add(n.opts.ResolvedRetention)}
				out = append(out, &r)
			}
		}
		resolved := f.State == detectors.StateResolved
		if !ok || st.key != key || (resolved && !st.resolved) || now.Sub(st.at) >= n.opts.ResendInterval {
			out = append(out, a)
			n.sent[f.ID] = sentState{key: key, at: now, resolved: resolved}
		}
	}
	for id := range n.sent {
		if !seen[id] {
			delete(n.sent, id)
		}
	}
	for key, r := range n.retired {
		if now.After(r.until) || current[key] != nil {
			delete(n.retired, key)
			continue
		}
		current[key] = r.alert
	}
	n.current = current
	n.mu.Unlock()
	if len(out) > 0 {
		for _, t := range n.targets {
			t.enqueue(out...)
		}
	}
}

// snapshot is every alert an Alertmanager that just came back should hear.
func (n *Notifier) snapshot() []*models.PostableAlert {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Collect(maps.Values(n.current))
}

// Start implements service.Service: one send loop per Alertmanager.
func (n *Notifier) Start(ctx context.Context) error {
	n.runMu.Lock()
	defer n.runMu.Unlock()
	if n.done != nil {
		return errors.New("notifier already started")
	}
	ctx, n.cancel = context.WithCancel(context.WithoutCancel(ctx))
	n.done = make(chan struct{})
	var wg sync.WaitGroup
	for _, t := range n.targets {
		wg.Add(1)
		go func() { defer wg.Done(); t.run(ctx) }()
	}
	go func(done chan struct{}) { wg.Wait(); close(done) }(n.done)
	return nil
}

// Stop implements service.Service: the send loops finish their current POST and make
// one last attempt to deliver what is queued, bounded by ctx.
func (n *Notifier) Stop(ctx context.Context) error {
	n.runMu.Lock()
	cancel, done := n.cancel, n.done
	n.cancel, n.done = nil, nil
	n.runMu.Unlock()
	if done == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("notifier did not stop in time: %w", ctx.Err())
	}
	for _, t := range n.targets {
		t.flush(ctx)
	}
	return nil
}

// target is one Alertmanager and its queue: an ordered set keyed by label set, so a
// newer version of an alert replaces the queued one instead of queueing twice.
type target struct {
	n    *Notifier
	name string
	url  string
	wake chan struct{}

	mu    sync.Mutex
	order []string
	items map[string]*models.PostableAlert
}

func (t *target) len() int { t.mu.Lock(); defer t.mu.Unlock(); return len(t.items) }

func (t *target) enqueue(alerts ...*models.PostableAlert) {
	t.mu.Lock()
	for _, a := range alerts {
		key := labelKey(a.Labels)
		if _, ok := t.items[key]; !ok {
			for len(t.items) >= t.n.opts.QueueCapacity {
				oldest := t.order[0]
				t.order = t.order[1:]
				delete(t.items, oldest)
				t.n.metrics.dropped.Inc()
			}
			t.order = append(t.order, key)
		}
		t.items[key] = a
	}
	t.mu.Unlock()
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// take removes up to n alerts from the front.
func (t *target) take(n int) []*models.PostableAlert {
	t.mu.Lock()
	defer t.mu.Unlock()
	n = min(n, len(t.order))
	out := make([]*models.PostableAlert, 0, n)
	for _, key := range t.order[:n] {
		out = append(out, t.items[key])
		delete(t.items, key)
	}
	t.order = t.order[n:]
	return out
}

// requeue puts a failed batch back at the front, except alerts a newer version of
// which was queued meanwhile. Past capacity the oldest are dropped.
func (t *target) requeue(batch []*models.PostableAlert) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var front []string
	for _, a := range batch {
		key := labelKey(a.Labels)
		if _, newer := t.items[key]; newer {
			continue
		}
		t.items[key] = a
		front = append(front, key)
	}
	t.order = append(front, t.order...)
	for len(t.order) > t.n.opts.QueueCapacity {
		delete(t.items, t.order[0])
		t.order = t.order[1:]
		t.n.metrics.dropped.Inc()
	}
}

func (t *target) run(ctx context.Context) {
	backoff := time.Duration(0)
	failing := false
	for {
		if t.len() == 0 {
			select {
			case <-ctx.Done():
				return
			case <-t.wake:
			}
		}
		batch := t.take(t.n.opts.BatchSize)
		if len(batch) == 0 {
			continue
		}
		err := t.post(ctx, batch)
		var rejected *rejectedError
		switch {
		case err == nil:
			backoff = 0
			if failing {
				failing = false
				// Back after an outage (or a restart that lost its memory): send every
				// alert that is still relevant, not only what happened to be queued.
				t.enqueue(t.n.snapshot()...)
				t.n.logger.Info("alertmanager reachable again", "alertmanager", t.name)
			}
		case errors.As(err, &rejected):
			// Alertmanager said the alerts are invalid: resending cannot help.
			t.n.metrics.dropped.Add(float64(len(batch)))
			t.n.logger.Error("alertmanager rejected alerts", "alertmanager", t.name, "alerts", len(batch), "err", err)
		default:
			t.requeue(batch)
			if !failing {
				t.n.logger.Warn("alertmanager unreachable; alerts stay queued", "alertmanager", t.name, "err", err)
			}
			failing = true
			backoff = min(max(2*backoff, 250*time.Millisecond), t.n.opts.MaxBackoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
		}
	}
}

// flush makes one attempt to deliver what is queued, within ctx.
func (t *target) flush(ctx context.Context) {
	for t.len() > 0 && ctx.Err() == nil {
		batch := t.take(t.n.opts.BatchSize)
		if err := t.post(ctx, batch); err != nil {
			t.requeue(batch)
			return
		}
	}
}

type rejectedError struct {
	status int
	body   string
}

func (e *rejectedError) Error() string { return fmt.Sprintf("status %d: %s", e.status, e.body) }

func (t *target) post(ctx context.Context, batch []*models.PostableAlert) error {
	body, err := json.Marshal(models.PostableAlerts(batch))
	if err != nil {
		return &rejectedError{status: 0, body: "encode: " + err.Error()}
	}
	ctx, cancel := context.WithTimeout(ctx, t.n.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("build request to %s: %w", t.name, err)
	}
	req.Header.Set("Content-Type", "application/json")
	switch {
	case t.n.opts.BearerToken != "":
		req.Header.Set("Authorization", "Bearer "+t.n.opts.BearerToken)
	case t.n.opts.Username != "":
		req.SetBasicAuth(t.n.opts.Username, t.n.opts.Password)
	}
	start := time.Now()
	resp, err := t.n.opts.Client.Do(req)
	t.n.metrics.latency.WithLabelValues(t.name).Observe(time.Since(start).Seconds())
	if err != nil {
		t.n.metrics.errors.WithLabelValues(t.name).Inc()
		return fmt.Errorf("post alerts to %s: %w", t.name, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		t.n.metrics.errors.WithLabelValues(t.name).Inc()
		if resp.StatusCode/100 == 4 && resp.StatusCode != http.StatusTooManyRequests &&
			resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden {
			return &rejectedError{status: resp.StatusCode, body: strings.TrimSpace(string(msg))}
		}
		return fmt.Errorf("post alerts to %s: status %d: %s", t.name, resp.StatusCode, strings.TrimSpace(string(msg)))
	}
	t.n.metrics.sent.WithLabelValues(t.name).Add(float64(len(batch)))
	return nil
}
