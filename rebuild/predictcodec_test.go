package rebuild

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// sampleIndex has an entry of every kind, ids out of order where a map holds them.
func sampleIndex() *teamIndex {
	x := newIndex()
	x.skip[900] = skipInfo{key: "broken", code: SkipShape, detail: "a flag property key 7 is not a string"}
	x.skip[-3] = skipInfo{key: "ünïcode 🚩", code: SkipDependencyLoop, detail: ""}
	x.drop[41] = "cohort value \"x\" is not an id int() accepts"
	x.drop[40] = dropNullProperties
	x.fjCohorts = []int64{10, 11, 1 << 40}
	x.defCohortsAll = []int64{-5, 10, 11, 12}
	x.defCohortsKept = []int64{10}
	x.deps.add(7, "alpha", depActive, []string{"8", "9"})
	x.deps.add(8, "beta", depActive|depEncrypted|depRemote, nil)
	x.deps.add(1<<50, "", 0, []string{"", "7"})
	return x
}

func requireSameIndex(t *testing.T, want, got *teamIndex) {
	t.Helper()
	require.True(t, want.sameAs(got))
	require.Equal(t, want.skip, got.skip)
	require.Equal(t, want.drop, got.drop)
}

func TestPredictionRoundTrip(t *testing.T) {
	t.Parallel()
	changed := time.Date(2026, 3, 4, 5, 6, 7, 891011000, time.UTC)
	for _, lb := range []lastBuild{
		{index: sampleIndex(), changed: changed},
		{index: newIndex()}, // a team without flags: no change time
		{index: newIndex(), changed: time.Unix(-1, 5).UTC()},
	} {
		raw := encodePrediction(42, Contract202602, lb)
		got, err := decodePrediction(raw, 42, Contract202602)
		require.NoError(t, err)
		requireSameIndex(t, lb.index, got.index)
		require.True(t, lb.changed.Equal(got.changed), "%v != %v", lb.changed, got.changed)
		require.Equal(t, lb.changed.IsZero(), got.changed.IsZero())
	}
}

// TestPredictionRefusesWhatIsNotItsOwn: every malformed or foreign entry is an error
// wrapping ErrBadPrediction, never a partial index.
func TestPredictionRefusesWhatIsNotItsOwn(t *testing.T) {
	t.Parallel()
	good := encodePrediction(42, Contract202602, lastBuild{index: sampleIndex(), changed: time.Unix(1e9, 0)})
	refuse := func(what string, b []byte, team int64, c Contract, msg string) {
		t.Helper()
		lb, err := decodePrediction(b, team, c)
		require.ErrorIs(t, err, ErrBadPrediction, what)
		require.ErrorContains(t, err, msg, what)
		require.Nil(t, lb.index, what)
	}
	refuse("another team's", good, 43, Contract202602, "written for team 42, read for team 43")
	refuse("another contract's", good, 42, Contract202609, `written for contract "2026-02"`)
	refuse("not ours", []byte("{\"flags\": []}"), 42, Contract202602, "not a flagwarden prediction")
	refuse("empty", nil, 42, Contract202602, "not a flagwarden prediction")
	next := append([]byte(nil), good...)
	next[len(predictionMagic)] = predictionVersion + 1
	refuse("a later version", next, 42, Contract202602, "version 2, this build reads 1")
	refuse("trailing bytes", append(append([]byte(nil), good...), 0), 42, Contract202602, "1 bytes after the end")
	for n := len(predictionMagic) + 1; n < len(good); n++ {
		_, err := decodePrediction(good[:n], 42, Contract202602)
		require.ErrorIs(t, err, ErrBadPrediction, "truncated to %d of %d bytes", n, len(good))
	}

	// Hand-written bodies after a valid header for team 1 and contract 2026-02.
	head := encodePrediction(1, Contract202602, lastBuild{index: newIndex()})
	head = head[:len(predictionMagic)+1+1+1+len(Contract202602)]
	body := func(parts ...byte) []byte { return append(append([]byte(nil), head...), parts...) }
	refuse("a bad change marker", body(2), 1, Contract202602, "change time marker")
	refuse("nanoseconds beyond a second", body(1, 0, 0x80, 0x94, 0xeb, 0xdc, 0x03), 1, Contract202602, "nanoseconds 1000000000")
	refuse("more entries than bytes", body(0, 0xff, 0xff, 0x03, 0), 1, Contract202602, "entries in")
	refuse("a repeated cohort", body(0, 0, 0, 2, 20, 0, 0, 0, 0), 1, Contract202602, "ids not increasing after 10")
	refuse("unknown dependency flags", body(0, 0, 0, 0, 0, 0, 1, 2, 0x08, 0, 0), 1, Contract202602, "dependency flags 0x8")
	refuse("a string longer than the rest", body(0, 0, 1, 2, 9, 'x'), 1, Contract202602, "a string of 9 bytes with 1 left")
	// A megabyte of minimal skip entries would make a 20 MiB map: refused on the way.
	many := body(0)
	many = binary.AppendUvarint(many, 300_000)
	for i := range 300_000 {
		many = append(many, byte(min(i, 1)), 0, 0, 0)
	}
	many = append(many, 0, 0, 0, 0, 0)
	refuse("an index far larger than its value", many, 1, Contract202602, "the index would take more than 16 MiB")
	_, err := decodePrediction(many[:len(many)-4*290_000-5], 1, Contract202602)
	require.ErrorContains(t, err, "entries in", "the count is checked against the bytes first")
	// The same bodies, well formed, decode.
	lb, err := decodePrediction(body(0, 0, 0, 2, 20, 1, 0, 0, 1, 2, depActive, 1, 'k', 1, 1, '9'), 1, Contract202602)
	require.NoError(t, err)
	require.Equal(t, []int64{10, 11}, lb.index.fjCohorts)
	require.Equal(t, "k", lb.index.deps.key(0))
}

// FuzzDecodePrediction: decoding never panics, and what it accepts encodes to an entry
// that decodes to the same index.
func FuzzDecodePrediction(f *testing.F) {
	f.Add(encodePrediction(1, Contract202602, lastBuild{index: sampleIndex(), changed: time.Unix(1e9, 7)}))
	f.Add(encodePrediction(1, Contract202602, lastBuild{index: newIndex()}))
	f.Add([]byte(predictionMagic + "\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		lb, err := decodePrediction(b, 1, Contract202602)
		if err != nil {
			require.ErrorIs(t, err, ErrBadPrediction)
			return
		}
		again, err := decodePrediction(encodePrediction(1, Contract202602, lb), 1, Contract202602)
		require.NoError(t, err)
		requireSameIndex(t, lb.index, again.index)
		require.True(t, lb.changed.Equal(again.changed))
	})
}
