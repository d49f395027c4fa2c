package web

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestVendoredChartLibraryMatchesTheLock checks that the uPlot files the binary embeds
// are the release the npm lock pins: the same version in package.json, the lock, VERSION
// and the file's own banner, the lock's integrity recorded in VERSION, and every file
// byte for byte what scripts/vendor-ui.sh copied (its SHA-256 in VERSION). A hand edit
// of a vendored file, or a lock moved without re-running the script, fails here.
func TestVendoredChartLibraryMatchesTheLock(t *testing.T) {
	t.Parallel()
	var pkg struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	raw, err := os.ReadFile("uivendor/package.json")
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &pkg))
	var lock struct {
		LockfileVersion int `json:"lockfileVersion"`
		Packages        map[string]struct {
			Version   string `json:"version"`
			Integrity string `json:"integrity"`
			License   string `json:"license"`
		} `json:"packages"`
	}
	raw, err = os.ReadFile("uivendor/package-lock.json")
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &lock))
	locked, ok := lock.Packages["node_modules/uplot"]
	require.True(t, ok, "the lock pins uplot")
	require.Equal(t, locked.Version, pkg.Dependencies["uplot"], "package.json pins the exact version the lock holds")
	require.True(t, strings.HasPrefix(locked.Integrity, "sha512-"), "the lock records the tarball's integrity")

	static, err := fs.Sub(ui, "ui/vendor/uplot")
	require.NoError(t, err)
	version, err := fs.ReadFile(static, "VERSION")
	require.NoError(t, err)
	hashes := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(version))
	var gotVersion, gotIntegrity string
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && f[0] == "uplot":
			gotVersion = f[1]
		case len(f) == 2 && f[0] == "integrity":
			gotIntegrity = f[1]
		case len(f) == 3 && f[0] == "sha256":
			hashes[f[2]] = f[1]
		}
	}
	require.Equal(t, locked.Version, gotVersion, "VERSION names the locked version")
	require.Equal(t, locked.Integrity, gotIntegrity, "VERSION carries the lock's integrity")
	require.ElementsMatch(t, []string{"uPlot.esm.js", "uPlot.min.css", "LICENSE"}, keysOf(hashes))
	for name, want := range hashes {
		body, err := fs.ReadFile(static, name)
		require.NoError(t, err)
		sum := sha256.Sum256(body)
		require.Equal(t, want, hex.EncodeToString(sum[:]), "%s differs from the copied release; run scripts/vendor-ui.sh", name)
	}
	esm, err := fs.ReadFile(static, "uPlot.esm.js")
	require.NoError(t, err)
	require.Contains(t, string(esm[:min(len(esm), 1024)]), "(v"+locked.Version+")", "the file's banner names the locked release")
	license, err := fs.ReadFile(static, "LICENSE")
	require.NoError(t, err)
	require.Contains(t, string(license), "MIT License")
	require.Equal(t, "MIT", locked.License)
}

func keysOf[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
