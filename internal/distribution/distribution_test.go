package distribution

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

func TestHistogramIsReplacedWhole(t *testing.T) {
	t.Parallel()
	h := New("x_bytes", "Sizes now.", []float64{10, 100}, "source")
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(h)

	h.Set([]float64{5, 10, 50, 500}, "a")
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP x_bytes Sizes now.
# TYPE x_bytes histogram
x_bytes_bucket{source="a",le="10"} 2
x_bytes_bucket{source="a",le="100"} 3
x_bytes_bucket{source="a",le="+Inf"} 4
x_bytes_sum{source="a"} 565
x_bytes_count{source="a"} 4
`)))

	// The next measurement replaces the last one (it is a state, not events), and an
	// empty population still exports every bucket.
	h.Set(nil, "a")
	h.Set([]float64{1000}, "b")
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP x_bytes Sizes now.
# TYPE x_bytes histogram
x_bytes_bucket{source="a",le="10"} 0
x_bytes_bucket{source="a",le="100"} 0
x_bytes_bucket{source="a",le="+Inf"} 0
x_bytes_sum{source="a"} 0
x_bytes_count{source="a"} 0
x_bytes_bucket{source="b",le="10"} 0
x_bytes_bucket{source="b",le="100"} 0
x_bytes_bucket{source="b",le="+Inf"} 1
x_bytes_sum{source="b"} 1000
x_bytes_count{source="b"} 1
`)))
	h.Delete("a")
	require.Equal(t, 1, testutil.CollectAndCount(h))
}
