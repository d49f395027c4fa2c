package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func runCLI(t *testing.T, environ []string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Main(context.Background(), args, Env{Stdout: &out, Stderr: &errOut, Environ: environ})
	return code, out.String(), errOut.String()
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "flagwarden.yaml")
	require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
	return p
}

func TestCheckConfig(t *testing.T) {
	t.Parallel()
	good := "flag_database:\n  url: postgres://u:pw@127.0.0.1/db\nbroker:\n  url: redis://127.0.0.1:6379/0\ncache:\n  url: redis://127.0.0.1:6379/1\n"
	tests := []struct {
		name     string
		body     string
		args     []string
		code     int
		contains []string
		absent   []string
	}{
		{name: "valid", body: good, code: 0, contains: []string{"configuration is valid"}},
		{name: "print redacts", body: good, args: []string{"--print"}, code: 0,
			contains: []string{"postgres://u:<secret>@127.0.0.1/db"}, absent: []string{":pw@"}},
		{name: "unknown key with line", body: good + "rebuild:\n  workerz: 3\n", code: 1,
			contains: []string{`line 8: unknown key "workerz"`}},
		{name: "missing required url", body: "broker:\n  url: redis://127.0.0.1:6379/0\n", code: 1,
			contains: []string{"flag_database.url: is required", "cache.url: is required", "2 problem(s)"}},
		{name: "not yaml", body: "flag_database: [unclosed\n", code: 1, contains: []string{"yaml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"check-config"}, tt.args...)
			args = append(args, writeFile(t, tt.body))
			code, out, errOut := runCLI(t, nil, args...)
			require.Equal(t, tt.code, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
			for _, c := range tt.contains {
				require.Contains(t, out+errOut, c)
			}
			for _, a := range tt.absent {
				require.NotContains(t, out+errOut, a)
			}
		})
	}
}

func TestCheckConfigMissingFileAndUsage(t *testing.T) {
	t.Parallel()
	code, _, errOut := runCLI(t, nil, "check-config", filepath.Join(t.TempDir(), "nope.yaml"))
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "no such file")

	code, _, _ = runCLI(t, nil, "check-config")
	require.Equal(t, 2, code, "no file is a usage error")

	code, out, _ := runCLI(t, nil, "check-config", "--env")
	require.Equal(t, 0, code)
	require.Contains(t, out, "FLAGWARDEN_BROKER_URL")
}

func TestTopLevelUsage(t *testing.T) {
	t.Parallel()
	code, out, _ := runCLI(t, nil, "--help")
	require.Equal(t, 0, code)
	for _, c := range newRoot(Env{}).Commands() {
		require.Contains(t, out, "  "+c.Name()+" ", "help lists %s", c.Name())
	}
	code, _, errOut := runCLI(t, nil, "frobnicate")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, `unknown command "frobnicate"`)

	code, out, _ = runCLI(t, nil, "version")
	require.Equal(t, 0, code)
	require.True(t, strings.HasPrefix(out, "flagwarden, version "), out)
	require.Contains(t, out, "revision: ", "the version names the commit it was built from")
}

func TestServeRejectsBadConfigBeforeConnecting(t *testing.T) {
	t.Parallel()
	code, _, errOut := runCLI(t, []string{"FLAGWARDEN_BROKER_URL=redis://127.0.0.1:6379/0"}, "serve")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "flag_database.url: is required")
}
