// Package collectors groups flagwarden's measuring side: one subpackage per source, each
// a ticker loop (internal/loop) around a pass that can be run and tested on its own.
//
//   - celery:  queue depth per priority list, unacked and overdue messages, what the
//     backlog is made of, and the age of the oldest waiting message (broker Redis).
//   - teams:   per-team flag data sizes in the flag database (PostHog schema).
//   - pods:    worker pod health from a Kubernetes informer (restarts, OOM kills,
//     CrashLoopBackOff, memory limit).
//   - promql:  optional PromQL queries for what the pod API cannot see (prefork children
//     killed for memory, working set against limit).
//   - caches:  cache freshness per team: size, build time, ETag and lag behind the data.
//
// Every pass replaces its snapshot in internal/snapshot, appends to the series store in
// internal/series, and sets Prometheus metrics whose labels are bounded (never a team id).
// A pass that fails returns its error, so the loop's health metric shows the collector
// down instead of a stale "all clear".
package collectors
