// Package dashboards holds flagwarden's monitoring mixin as generated files: the Grafana
// dashboards (grafana/*.json), the Prometheus rules (prometheus/rules.yml, with their
// promtool tests in prometheus/rules_test.yml) and the PrometheusRule in
// deploy/kubernetes/monitoring, all produced by dashboards/mixin. Its tests keep them
// honest: the files are what the mixin generates, the dashboards are provisionable,
// and every panel's query and every rule runs through a real Prometheus scraping a
// real flagwarden, so that none refers to a metric flagwarden does not export.
package dashboards

//go:generate go run ./gen -root ..
