package snapshot

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestTeamSizeEstimates(t *testing.T) {
	t.Parallel()
	ts := TeamSize{FlagsPayloadBytes: 300 << 20, DefinitionsPayloadBytes: 200 << 20}
	require.Equal(t, int64(300<<20), ts.PayloadBytes(), "the larger payload ranks the team")
	require.Equal(t, int64(NaiveBuildFactor*(500<<20)), ts.EstimatedNaiveBuildBytes(),
		"a load-everything build holds both payloads many times over")
	require.Greater(t, ts.EstimatedNaiveBuildBytes(), int64(3<<30), "500 MiB of payloads is past an 8 GiB worker's comfort")
}

func TestStoreReplacesWholeSnapshots(t *testing.T) {
	t.Parallel()
	s := NewStore()
	_, ok := s.Team(1)
	require.False(t, ok, "an empty store knows no teams")
	require.NotNil(t, s.Teams().Teams, "an empty team snapshot is still a usable map")

	now := time.Date(2026, 2, 5, 0, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.SetTeams(Teams{At: now, Full: true, Teams: map[int64]TeamSize{int64(i): {TeamID: int64(i)}}})
			s.SetQueues(Queues{At: now, Queues: []Queue{{Name: "celery", Depth: int64(i)}}})
			_ = s.Teams()
			_ = s.Queues()
		}()
	}
	wg.Wait()
	require.Len(t, s.Teams().Teams, 1, "a set replaces the snapshot, it does not merge")
	s.SetPods(Pods{At: now, Source: "kubernetes", Pods: []Pod{{Name: "w-1", Waiting: "CrashLoopBackOff"}}})
	require.Equal(t, "CrashLoopBackOff", s.Pods().Pods[0].Waiting)
	s.SetCaches(Caches{At: now, Teams: []CacheState{{TeamID: 7, Kind: "flags", Lag: time.Minute}}})
	require.Equal(t, time.Minute, s.Caches().Teams[0].Lag)
}
