// Package dashboards holds flagwarden's Grafana dashboard (grafana/flagwarden.json) and
// Prometheus rules (prometheus/rules.yml with their promtool tests in
// prometheus/rules_test.yml), and the tests that keep them honest: the dashboard is
// provisionable, and every panel's query is run through a real Prometheus scraping a
// real flagwarden, so that no panel or rule refers to a metric flagwarden does not
// export.
package dashboards
