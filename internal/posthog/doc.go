// Package posthog holds what flagwarden knows about PostHog's flag database: the facts
// of its schema that every reader and writer of team ids must agree on.
package posthog
