// Package faults is flagwarden's fault suite: it builds the real binary, runs
// `flagwarden serve` as a subprocess against databases and redis-server instances of
// its own and a real Alertmanager, breaks one of them at a time (kill -9 of serve
// mid-build, a cache Redis that restarts empty, terminated state-database connections,
// an Alertmanager outage) and asserts the outcome a user would check: no lost build,
// every cache back, writes that succeed, no lost alert. The package holds only tests.
package faults
