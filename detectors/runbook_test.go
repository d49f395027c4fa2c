package detectors

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Every alertname links to docs/runbook.md#<alertname>: the section must exist, and
// every Kind: "…" in the code must be listed in Kinds.
func TestRunbookHasASectionPerAlertname(t *testing.T) {
	t.Parallel()
	body, err := os.ReadFile("../docs/runbook.md")
	require.NoError(t, err)
	for _, k := range Kinds {
		require.Contains(t, string(body), "\n## "+k+"\n", "runbook section for %s", k)
	}
	out, err := exec.Command("grep", "-rhoE", "--include=*.go", "--exclude=*_test.go", `Kind: +"[a-z_]+"`, ".").Output()
	require.NoError(t, err)
	re := regexp.MustCompile(`"([a-z_]+)"`)
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		m := re.FindStringSubmatch(line)
		require.NotNil(t, m, line)
		require.Contains(t, Kinds, m[1], "Kinds lists %s", m[1])
	}
}
