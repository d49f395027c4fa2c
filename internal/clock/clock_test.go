package clock

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestScaledRunsSpeedTimesFaster(t *testing.T) {
	t.Parallel()
	wall0 := time.Date(2026, 2, 5, 12, 0, 0, 0, time.UTC)
	now := wall0
	origin := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	c := NewScaledFrom(wall0, origin, 60, func() time.Time { return now })
	require.Equal(t, origin, c.Now())
	now = wall0.Add(time.Minute)
	require.Equal(t, origin.Add(time.Hour), c.Now(), "a real minute is a simulated hour")
	require.Equal(t, now, c.ToWall(c.Now()))
	require.Equal(t, origin.Add(2*time.Hour), c.FromWall(wall0.Add(2*time.Minute)))
	require.Equal(t, time.Second, c.WallDuration(time.Minute))
	require.True(t, c.FromWall(time.Time{}).IsZero(), "an unset time stays unset")
}

func TestWallIsIdentity(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 2, 5, 12, 0, 0, 0, time.UTC)
	require.Equal(t, at, Wall.FromWall(at))
	require.Equal(t, at, Wall.ToWall(at))
	require.WithinDuration(t, time.Now(), Or(nil).Now(), time.Second)
}
