package cli

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestReplayUsageErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args []string
		code int
		msg  string
	}{
		{nil, 2, "name the scenario"},
		{[]string{"outage"}, 2, "name the scenario"},
		{[]string{"incident", "--seed", "0"}, 2, "--seed must be positive"},
		{[]string{"incident", "--seed", "x"}, 2, `invalid argument "x" for "--seed"`},
		{[]string{"incident", "extra"}, 2, "unexpected argument"},
		{[]string{"incident", "-o", "xml"}, 2, "must be one of table, wide, json, yaml"},
		{[]string{"incident", "--json", "-o", "yaml"}, 2, "--json and -o yaml disagree"},
	}
	for _, c := range cases {
		var out, errb bytes.Buffer
		code := Main(context.Background(), append([]string{"replay"}, c.args...), Env{Stdout: &out, Stderr: &errb})
		require.Equal(t, c.code, code, "%v: %s", c.args, errb.String())
		require.Contains(t, errb.String(), c.msg, "%v", c.args)
	}
	// Help asked for goes to stdout and succeeds.
	var out, errb bytes.Buffer
	require.Equal(t, 0, Main(context.Background(), []string{"replay", "incident", "--help"}, Env{Stdout: &out, Stderr: &errb}))
	require.Contains(t, out.String(), "replay incident [-o table|wide|json|yaml] [--seed N]")
	require.Empty(t, errb.String())
}
