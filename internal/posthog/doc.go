// Package posthog holds what flagwarden knows about PostHog's flag database: the schema
// subset it reads (schema.sql), the facts every reader and writer of team ids must agree
// on, the kinds of bad rows, and every query flagwarden runs on that database — the
// team-size measurement, a build's reads (as SQL text the rebuild reader runs), team
// lookups, change listings and the NOTIFY triggers. The seeder lives in posthog/seed.
package posthog
