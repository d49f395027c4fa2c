package alertname

import (
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/detectors"
)

func TestEveryKindHasAPrefixedCamelCaseName(t *testing.T) {
	t.Parallel()
	camel := regexp.MustCompile(`^Flagwarden[A-Z][A-Za-z]*$`)
	seen := map[string]string{}
	for _, k := range append(detectors.Kinds, "notifier_dropping_alerts", "flagwarden_down") {
		n := For(k)
		require.Regexp(t, camel, n, "kind %s", k)
		require.NotContains(t, seen, n, "kinds %s and %s share the name %s", seen[n], k, n)
		seen[n] = k
	}
	require.Len(t, Kinds(), len(seen), "the table names only kinds that exist")
	require.Equal(t, "no_such_kind", For("no_such_kind"))
}
