package config

import "time"

// Verify is the periodic comparison of the published caches (Redis, and S3 when
// cache.s3 is enabled) with a fresh build from the flag database, whoever wrote them.
// It runs on the leader only; what it finds becomes cache_mismatch findings.
type Verify struct {
	// Enabled runs the check on the leader.
	Enabled bool `yaml:"enabled"`
	// Interval is how often a pass starts (PostHog's own check runs every 30 minutes).
	Interval time.Duration `yaml:"interval"`
	// Timeout bounds one pass; teams not reached wait for the next.
	Timeout time.Duration `yaml:"timeout"`
	// TeamsPerPass bounds the teams one pass checks; the next pass continues after the
	// last team checked, so every team is covered in turn.
	TeamsPerPass int `yaml:"teams_per_pass"`
	// Grace leaves teams whose flag data changed this recently unjudged: their rebuild
	// may still be on its way.
	Grace time.Duration `yaml:"grace"`
}

func defaultVerify() Verify {
	return Verify{Interval: 30 * time.Minute, Timeout: 25 * time.Minute, TeamsPerPass: 1000, Grace: 5 * time.Minute}
}

func (v Verify) validate(p *problems) {
	p.positive("verify.interval", v.Interval)
	p.positive("verify.timeout", v.Timeout)
	if v.Timeout > v.Interval && v.Interval > 0 {
		p.add("verify.timeout", "must not exceed verify.interval (%s), got %s", v.Interval, v.Timeout)
	}
	p.atLeast("verify.teams_per_pass", int64(v.TeamsPerPass), 1)
	if v.Grace < 0 {
		p.add("verify.grace", "must not be negative, got %s", v.Grace)
	}
}
