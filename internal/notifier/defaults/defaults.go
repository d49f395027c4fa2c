// Package defaults holds the Alertmanager notifier's default settings. The notifier
// fills unset Options with them and internal/config starts the alertmanager section
// from them, so each is written here once; it imports only time, so that the config
// loader can use it without the notifier's HTTP and metrics dependencies.
package defaults

import "time"

const (
	// Timeout bounds one POST to an Alertmanager.
	Timeout = 10 * time.Second
	// ResendInterval is how often firing alerts are sent again.
	ResendInterval = time.Minute
	// ResolvedRetention is how long resolved alerts keep being resent.
	ResolvedRetention = 15 * time.Minute
	// QueueCapacity bounds the send queue.
	QueueCapacity = 10000
	// BatchSize is the most alerts one POST carries.
	BatchSize = 64
)
