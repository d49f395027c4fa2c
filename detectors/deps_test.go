package detectors

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// forbiddenDeps are what the detectors must not depend on: the rebuild engine (and
// River through it), a database driver and the config file's loader.
var forbiddenDeps = []string{
	"github.com/flagwarden/flagwarden/rebuild",
	"github.com/flagwarden/flagwarden/internal/config",
	"github.com/riverqueue/",
	"github.com/jackc/pgx",
	"go.yaml.in/yaml",
	"gopkg.in/yaml",
}

// violations lists pkg's dependencies (go list -deps) that forbiddenDeps rules out.
func violations(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", pkg).Output()
	require.NoError(t, err, "go list -deps %s", pkg)
	deps := strings.Fields(string(out))
	require.NotEmpty(t, deps)
	var bad []string
	for _, d := range deps {
		for _, f := range forbiddenDeps {
			if strings.HasPrefix(d, f) {
				bad = append(bad, d)
			}
		}
	}
	return bad
}

// TestDependencyRule: the detectors judge measurements and know nothing of how they
// were taken or what acts on the findings, so that what imports them (the replay, the
// offline analysis) does not pull in the rebuild engine, River, pgx or the config loader.
func TestDependencyRule(t *testing.T) {
	t.Parallel()
	require.Empty(t, violations(t, "."), "go list -deps ./detectors")
	// The check itself sees a violation where there is one: the Postgres findings
	// store is apart precisely because it needs pgx.
	require.NotEmpty(t, violations(t, "./pgstore"), "go list -deps ./detectors/pgstore")
}
