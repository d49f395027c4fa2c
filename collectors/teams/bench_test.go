package teams

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/internal/posthog/seed"
	"github.com/flagwarden/flagwarden/internal/snapshot"
)

// BenchmarkFullPass seeds a flag database (FLAGWARDEN_BENCH_TEAMS teams, default 20,000,
// plus a 20,000-flag giant) and times one full pass and one incremental pass over it.
// FLAGWARDEN_BENCH_FLAG_SHARE (share of teams with flags) and FLAGWARDEN_BENCH_MIN_FLAGS
// (the smallest such team) scale the flag count up, e.g. to 10 million flags:
//
//	FLAGWARDEN_BENCH_TEAMS=250000 go test ./collectors/teams -run '^$' -bench FullPass -benchtime 1x -timeout 60m
//	FLAGWARDEN_BENCH_TEAMS=250000 FLAGWARDEN_BENCH_FLAG_SHARE=1 FLAGWARDEN_BENCH_MIN_FLAGS=6 go test ./collectors/teams -run '^$' -bench FullPass -benchtime 1x -timeout 60m
func BenchmarkFullPass(b *testing.B) {
	teams := 20000
	if v := os.Getenv("FLAGWARDEN_BENCH_TEAMS"); v != "" {
		n, err := strconv.Atoi(v)
		require.NoError(b, err)
		teams = n
	}
	opts := seed.Options{Teams: teams, Seed: 11, GiantFlags: 20000, BadData: true}
	if v := os.Getenv("FLAGWARDEN_BENCH_FLAG_SHARE"); v != "" {
		share, err := strconv.ParseFloat(v, 64)
		require.NoError(b, err)
		opts.FlagTeamShare = share
	}
	if v := os.Getenv("FLAGWARDEN_BENCH_MIN_FLAGS"); v != "" {
		n, err := strconv.Atoi(v)
		require.NoError(b, err)
		opts.MinFlags = n
	}
	ctx := context.Background()
	pool := newPool(b)
	res, err := seed.Fleet(ctx, pool, opts)
	require.NoError(b, err)
	_, err = pool.Exec(ctx, "VACUUM ANALYZE")
	require.NoError(b, err)
	c, err := New(NewPostgres(pool, time.Minute), Options{}, snapshot.NewStore(), nil, prometheus.NewRegistry(), discardLogger())
	require.NoError(b, err)
	var full, incr time.Duration
	var measured int
	for b.Loop() {
		start := time.Now()
		t, err := c.Collect(ctx)
		require.NoError(b, err)
		full = time.Since(start)
		measured = len(t.Teams)
		start = time.Now()
		_, err = c.Refresh(ctx)
		require.NoError(b, err)
		incr = time.Since(start)
	}
	b.ReportMetric(full.Seconds(), "s/full-pass")
	fmt.Printf("\n%-8s %-10s %-9s %-12s %-14s %-14s\n", "teams", "with-flags", "flags", "cohorts", "full pass", "incremental")
	fmt.Printf("%-8d %-10d %-9d %-12d %-14s %-14s\n", res.Teams, measured, res.Flags, res.Cohorts, full.Round(time.Millisecond), incr.Round(time.Millisecond))
	fmt.Printf("seeded in %s\n", res.Elapsed.Round(time.Second))
}
