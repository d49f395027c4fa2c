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
		{[]string{"incident", "--seed", "x"}, 2, "invalid value"},
		{[]string{"incident", "extra"}, 2, "unexpected argument"},
		{[]string{"--help"}, 0, "replay incident [--json] [--seed N]"},
	}
	for _, c := range cases {
		var out, errb bytes.Buffer
		code := Main(context.Background(), append([]string{"replay"}, c.args...), Env{Stdout: &out, Stderr: &errb})
		require.Equal(t, c.code, code, "%v: %s", c.args, errb.String())
		require.Contains(t, errb.String(), c.msg, "%v", c.args)
	}
}
