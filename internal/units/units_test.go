package units

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestBytes(t *testing.T) {
	t.Parallel()
	for in, want := range map[int64]string{
		0: "0 B", 512: "512 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB",
		448948504: "428.2 MiB", 8 << 30: "8.0 GiB", -2048: "-2.0 KiB", 3 << 50: "3.0 PiB",
	} {
		require.Equal(t, want, Bytes(in), "%d", in)
	}
}
