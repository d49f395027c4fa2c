package rebuild

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/internal/config"
	"github.com/flagwarden/flagwarden/internal/pyjson"
)

func TestContractNames(t *testing.T) {
	t.Parallel()
	var names []string
	for _, c := range Contracts() {
		names = append(names, string(c))
	}
	require.Equal(t, config.PostHogContracts, names, "config.PostHogContracts lists what the builder writes")
	c, err := ParseContract("")
	require.NoError(t, err)
	require.Equal(t, NewestContract, c)
	_, err = ParseContract("2025-01")
	require.ErrorContains(t, err, `unknown PostHog contract version "2025-01" (known: 2026-02, 2026-09)`)
}

func TestPyInt(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   string
		want int64
		ok   bool
	}{
		{`12`, 12, true}, {`-3`, -3, true}, {`1.9`, 1, true}, {`-1.9`, -1, true}, {`true`, 1, true}, {`false`, 0, true},
		{`"12"`, 12, true}, {`" 12\n"`, 12, true}, {`"+7"`, 7, true}, {`"1_000"`, 1000, true}, {`"٣"`, 3, true},
		{`"1__0"`, 0, false}, {`"_1"`, 0, false}, {`"1_"`, 0, false}, {`"1.0"`, 0, false}, {`"abc"`, 0, false},
		{`""`, 0, false}, {`null`, 0, false}, {`[1]`, 0, false}, {`{}`, 0, false},
		{`99999999999999999999`, noID, true}, {`"99999999999999999999"`, noID, true}, {`1e300`, noID, true},
	}
	for _, c := range cases {
		var d pyjson.Doc
		require.NoError(t, d.Parse([]byte(c.in)))
		v, ok := pyInt(d.Root())
		require.Equal(t, c.ok, ok, c.in)
		if ok {
			require.Equal(t, c.want, v, c.in)
		}
	}
}
