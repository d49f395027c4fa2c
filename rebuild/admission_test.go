package rebuild

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestAdmit(t *testing.T) {
	t.Parallel()
	l := AdmissionLimits{LargeTeamBytes: 100, HardLimitBytes: 1000}
	for name, tc := range map[string]struct {
		est         int64
		quarantined bool
		want        Lane
		quarantine  bool
	}{
		"small":                     {est: 99, want: LaneSmall},
		"large at the threshold":    {est: 100, want: LaneLarge},
		"hard limit quarantines":    {est: 1000, want: LaneQuarantine, quarantine: true},
		"quarantined stays":         {est: 1, quarantined: true, want: LaneQuarantine},
		"quarantined is not re-run": {est: 5000, quarantined: true, want: LaneQuarantine},
	} {
		ad := Admit(tc.est, tc.quarantined, l)
		require.Equal(t, tc.want, ad.Lane, name)
		require.Equal(t, tc.quarantine, ad.Quarantine, name)
		if tc.quarantine {
			require.Contains(t, ad.Reason, "exceeds the hard limit", name)
		}
	}
}
