package app

import (
	"github.com/flagwarden/flagwarden/collectors/celery"
	"github.com/flagwarden/flagwarden/detectors"
	"github.com/flagwarden/flagwarden/internal/config"
	"github.com/flagwarden/flagwarden/internal/loop"
	"github.com/flagwarden/flagwarden/internal/series"
	"github.com/flagwarden/flagwarden/internal/statedb"
	"github.com/flagwarden/flagwarden/web"
)

// This file turns the config file's types into the components' own Options: the only
// place besides the CLI where both are known, so that a component never imports the
// config loader.

// loopTiming is a loop's timing from its config section.
func loopTiming(c config.Loop) loop.Timing {
	return loop.Timing{Interval: c.Interval, Timeout: c.Timeout, Jitter: c.Jitter}
}

// celeryOptions is the Celery collector's options from the broker section.
func celeryOptions(b config.Broker) celery.Options {
	return celery.Options{
		Queues: b.Queues, Sep: b.Sep, PrioritySteps: b.PrioritySteps, GlobalKeyPrefix: b.GlobalKeyPrefix,
		VisibilityTimeout: b.VisibilityTimeout, SampleSize: off(b.SampleSize), SampleQueues: off(b.SampleQueues),
		TeamKwarg: b.TeamArg.Kwarg, TeamPosition: b.TeamArg.Position,
		MaxLabelledQueues: b.MaxLabelledQueues, PipelineChunk: b.PipelineChunk, UnackedScanLimit: off(b.UnackedScanLimit),
	}
}

// off maps the config file's 0 ("none") to a component option's negative ("off").
func off(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// webAuth is the API's bearer tokens from the auth section. The roles are spelled the
// same in both, so a role passes through as it is and the API's validation still
// refuses one it does not know.
func webAuth(a config.Auth) web.Auth {
	out := web.Auth{OpenReads: a.OpenReads}
	for _, t := range a.Tokens {
		out.Tokens = append(out.Tokens, web.Token{Name: t.Name, Token: string(t.Token), Role: web.Role(t.Role)})
	}
	return out
}

// databaseOptions is a pool's options from a database section; the URL stays the
// config's type, which prints itself without the password.
func databaseOptions(d config.Database) statedb.Options {
	return statedb.Options{URL: d.URL, MaxConns: d.MaxConns, StatementTimeout: d.StatementTimeout}
}

// detectorOptions is the detector pass's judgment from the detectors section (and the
// links and retention it shares with http and alertmanager); the caller adds the
// stores, the pager and the clock.
func detectorOptions(cfg config.Config) detectors.EngineOptions {
	d := cfg.Detectors
	return detectors.EngineOptions{
		Links:             detectors.Links{RunbookBase: d.RunbookBaseURL, ExternalURL: cfg.HTTP.ExternalURL},
		ResolvedRetention: cfg.Alertmanager.ResolvedRetention,
		FindingsRetention: d.FindingsRetention,
		Backlog: detectors.BacklogOptions{
			Limit: float64(d.BacklogLimit), Floor: float64(d.BacklogFloor),
			ShortWindow: d.BacklogShortWindow, LongWindow: d.BacklogLongWindow,
			StallAfter: d.StallAfter, For: d.For, Weeks: d.BacklogWeeks, Location: d.Location(),
		},
		Outlier: detectors.OutlierOptions{MinBytes: int64(d.OutlierMinBytes), WorkerMemoryLimit: int64(d.WorkerMemoryLimit)},
		Growth:  detectors.GrowthOptions{MinDays: d.GrowthMinDays, MinBytes: int64(d.OutlierMinBytes)},
		Worker: detectors.WorkerOptions{
			OOMWindow: d.OOMWindow, MemoryNearLimit: d.MemoryNearLimit, For: d.For, OOMKeepFiring: d.OOMKeepFiring,
		},
		Cache:              detectors.CacheOptions{StaleAfter: d.StaleAfter},
		CollectorDownAfter: d.CollectorDownAfter,
	}
}

// seriesOptions bounds the in-memory series as collectors.series describes.
func seriesOptions(s config.Series) series.Options {
	return series.Options{Retention: s.Retention, MaxPoints: s.MaxPoints, MaxSeries: s.MaxSeries}
}
