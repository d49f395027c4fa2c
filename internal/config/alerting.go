package config

import (
	"time"

	notifierdefaults "github.com/flagwarden/flagwarden/internal/notifier/defaults"
)

// Alertmanager is where findings page. Every URL receives every alert (HA pairs
// deduplicate among themselves), as Prometheus does.
type Alertmanager struct {
	// URLs of Alertmanagers (http://host:9093); empty means findings only show on the
	// dashboard and API.
	URLs []string `yaml:"urls"`
	// Username and Password for basic auth, if the Alertmanagers require it.
	Username string `yaml:"username"`
	Password Secret `yaml:"password"`
	// BearerToken is sent as Authorization: Bearer, if set.
	BearerToken Secret `yaml:"bearer_token"`
	// Timeout bounds one POST.
	Timeout time.Duration `yaml:"timeout"`
	// ResendInterval is how often firing alerts are sent again (endsAt moves ahead).
	ResendInterval time.Duration `yaml:"resend_interval"`
	// ResolvedRetention is how long resolved alerts keep being resent.
	ResolvedRetention time.Duration `yaml:"resolved_retention"`
	// QueueCapacity bounds the send queue; the oldest alerts are dropped (and counted) past it.
	QueueCapacity int `yaml:"queue_capacity"`
	// BatchSize is the most alerts one POST carries.
	BatchSize int `yaml:"batch_size"`
}

func defaultAlertmanager() Alertmanager {
	return Alertmanager{
		Timeout:           notifierdefaults.Timeout,
		ResendInterval:    notifierdefaults.ResendInterval,
		ResolvedRetention: notifierdefaults.ResolvedRetention,
		QueueCapacity:     notifierdefaults.QueueCapacity,
		BatchSize:         notifierdefaults.BatchSize,
	}
}

func (a Alertmanager) validate(p *problems) {
	for i, u := range a.URLs {
		checkURL(p, fieldIndex("alertmanager.urls", i), u, "http", "https")
	}
	if a.Password != "" && a.Username == "" {
		p.add("alertmanager.username", "is required when alertmanager.password is set")
	}
	if a.BearerToken != "" && a.Username != "" {
		p.add("alertmanager.bearer_token", "cannot be combined with alertmanager.username (basic auth)")
	}
	p.positive("alertmanager.timeout", a.Timeout)
	p.positive("alertmanager.resend_interval", a.ResendInterval)
	p.positive("alertmanager.resolved_retention", a.ResolvedRetention)
	p.atLeast("alertmanager.queue_capacity", int64(a.QueueCapacity), 1)
	p.atLeast("alertmanager.batch_size", int64(a.BatchSize), 1)
}
