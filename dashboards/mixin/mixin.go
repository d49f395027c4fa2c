// Package mixin generates flagwarden's monitoring mixin, its Grafana dashboards and
// Prometheus rules, from one source: Go code with the selectors and thresholds as
// parameters. The thresholds default to flagwarden's own configuration defaults
// (internal/config, documented in flagwarden.example.yaml), so the detectors, the
// rules and the dashboards' threshold lines agree; FromConfig takes them from a
// deployment's configuration instead.
//
// Dashboards are built with the Grafana Foundation SDK's typed builders, rules as
// plain structs marshalled to YAML. dashboards/gen writes the files; the tests in
// dashboards/ fail when the committed files are not what this package generates.
package mixin

import (
	"fmt"
	"strings"
	"time"

	"github.com/flagwarden/flagwarden/internal/config"
)

// Config holds the mixin's parameters.
type Config struct {
	// Selector picks flagwarden's series in the rules, e.g. `job="flagwarden"`.
	Selector string
	// ClusterLabel is the label that tells clusters apart where one Prometheus (or
	// Thanos, Mimir) holds several; rules group by it and dashboards have a variable
	// for it. Series without it still match.
	ClusterLabel string
	// RunbookURL is the runbook document; each alert links to #<kind>.
	RunbookURL string
	// GrafanaURL is where the dashboards are served; alerts' dashboard_url points
	// there. The default is Grafana's own default root_url.
	GrafanaURL string
	// FlagwardenURL is flagwarden's own dashboard (http.external_url), which has the
	// per-team pages; the Grafana dashboards link to it.
	FlagwardenURL string

	Thresholds Thresholds
}

// Thresholds are the values the alerts fire at and the dashboards draw.
type Thresholds struct {
	// From the detectors' configuration (detectors.* in flagwarden.example.yaml).
	BacklogFloor       int64         // a queue below this depth is never called growing
	BacklogLimit       int64         // the depth the growth is projected against
	StaleAfter         time.Duration // a cache lagging more than this is stale
	CollectorDownAfter time.Duration // a loop without success this long is down
	OutlierMinBytes    int64         // no team smaller than this is an outlier
	StallAfter         time.Duration // a non-empty queue that has not decreased this long
	OOMWindow          time.Duration // OOM kills are counted over this window
	MemoryNearLimit    float64       // working set / limit that is a warning
	For                time.Duration // how long a condition holds before it fires

	// The detectors' built-in constants, which PromQL needs spelled out.
	OutlierMinZ   float64 // the least robust z that is an outlier (Iglewicz and Hoaglin)
	OOMCritical   int     // OOM kills in OOMWindow that are critical
	WorkersFor    time.Duration
	BacklogFor    time.Duration // growth must last this long: a worked-off burst does not page
	BacklogAhead  time.Duration // how far ahead a critical backlog is projected
	QuarantineFor time.Duration
	// DownFor is how long no flagwarden target may be up before FlagwardenDown fires.
	DownFor time.Duration
}

// Default is the mixin for flagwarden's default configuration.
func Default() Config { return FromConfig(config.Default()) }

// FromConfig takes the thresholds and URLs from a flagwarden configuration.
func FromConfig(c config.Config) Config {
	d := c.Detectors
	flagwardenURL := c.HTTP.ExternalURL
	if flagwardenURL == "" {
		flagwardenURL = "http://" + c.HTTP.Listen
	}
	return Config{
		Selector:      `job="flagwarden"`,
		ClusterLabel:  "cluster",
		RunbookURL:    d.RunbookBaseURL,
		GrafanaURL:    "http://localhost:3000",
		FlagwardenURL: strings.TrimSuffix(flagwardenURL, "/"),
		Thresholds: Thresholds{
			BacklogFloor:       d.BacklogFloor,
			BacklogLimit:       d.BacklogLimit,
			StaleAfter:         d.StaleAfter,
			CollectorDownAfter: d.CollectorDownAfter,
			OutlierMinBytes:    int64(d.OutlierMinBytes),
			StallAfter:         d.StallAfter,
			OOMWindow:          d.OOMWindow,
			MemoryNearLimit:    d.MemoryNearLimit,
			For:                d.For,
			OutlierMinZ:        3.5,
			OOMCritical:        3,
			WorkersFor:         10 * time.Minute,
			BacklogFor:         30 * time.Minute,
			BacklogAhead:       4 * time.Hour,
			QuarantineFor:      10 * time.Minute,
			DownFor:            5 * time.Minute,
		},
	}
}

// sel returns metric with the mixin's selector and extra matchers.
func (c Config) sel(metric string, matchers ...string) string {
	m := append([]string{c.Selector}, matchers...)
	return metric + "{" + strings.Join(m, ", ") + "}"
}

// by is a grouping clause with the cluster label first.
func (c Config) by(labels ...string) string {
	return "by (" + strings.Join(append([]string{c.ClusterLabel}, labels...), ", ") + ")"
}

// promDuration formats d the way Prometheus writes durations (5m, 1h30m, 90s).
func promDuration(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	var b strings.Builder
	for _, u := range []struct {
		d time.Duration
		s string
	}{{time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if n := d / u.d; n > 0 {
			fmt.Fprintf(&b, "%d%s", n, u.s)
			d -= n * u.d
		}
	}
	return b.String()
}
