package app

import (
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const module = "github.com/flagwarden/flagwarden"

// configReaders may import the config file's types: the composition root and the
// commands convert its sections into each component's own options, and the monitoring
// mixin generates its rules from the config's defaults on purpose, so that a changed
// default changes the alert thresholds with it.
var configReaders = []string{
	module + "/internal/app",
	module + "/internal/cli",
	module + "/internal/config",
	module + "/dashboards",
}

// configImporters lists the module's packages whose own (non-test) imports include
// internal/config.
func configImporters(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, module+"/...").Output()
	require.NoError(t, err, "go list %s/...", module)
	var importers []string
	for line := range strings.Lines(string(out)) {
		fields := strings.Fields(line)
		if len(fields) > 1 && slices.Contains(fields[1:], module+"/internal/config") {
			importers = append(importers, fields[0])
		}
	}
	return importers
}

func allowedReader(pkg string) bool {
	return slices.ContainsFunc(configReaders, func(r string) bool {
		return pkg == r || strings.HasPrefix(pkg, r+"/")
	})
}

// TestOnlyTheCompositionReadsConfig: components take their own options, so that one
// can be built, tested and reused without the config file, and a config key is
// converted in one place.
func TestOnlyTheCompositionReadsConfig(t *testing.T) {
	t.Parallel()
	importers := configImporters(t)
	// The listing sees imports where there are some: this package is one.
	require.Contains(t, importers, module+"/internal/app")
	var bad []string
	for _, pkg := range importers {
		if !allowedReader(pkg) {
			bad = append(bad, pkg)
		}
	}
	require.Empty(t, bad, "packages importing internal/config outside %v", configReaders)
}
