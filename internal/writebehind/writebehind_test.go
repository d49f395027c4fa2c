package writebehind

import (
	"bytes"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestInOrderAndFinish(t *testing.T) {
	t.Parallel()
	var got bytes.Buffer
	var chunks []int
	finished := false
	w := New(4, func(b []byte) error { chunks = append(chunks, len(b)); got.Write(b); return nil },
		func(ok bool) error { finished = ok; return nil })
	for _, p := range []string{"ab", "cdefg", "", "hijklmnopq", "r"} {
		n, err := w.Write([]byte(p))
		require.NoError(t, err)
		require.Equal(t, len(p), n)
	}
	require.NoError(t, w.Close())
	require.NoError(t, w.Close(), "a second Close returns the same result")
	require.Equal(t, "abcdefghijklmnopqr", got.String())
	require.Equal(t, []int{4, 4, 4, 4, 2}, chunks)
	require.True(t, finished)
	_, err := w.Write([]byte("x"))
	require.ErrorIs(t, err, ErrClosed)
}

func TestConsumerErrorSurfaces(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	calls, finishOK := 0, true
	w := New(2, func([]byte) error { calls++; return boom }, func(ok bool) error { finishOK = ok; return nil })
	var err error
	for i := 0; i < 10 && err == nil; i++ {
		_, err = w.Write([]byte("ab"))
	}
	require.ErrorIs(t, err, boom, "a later Write reports the consumer's error")
	require.ErrorIs(t, w.Close(), boom)
	require.Equal(t, 1, calls, "nothing is consumed after the first error")
	require.False(t, finishOK)
}

func TestAbortDropsBuffered(t *testing.T) {
	t.Parallel()
	var got bytes.Buffer
	finishOK := true
	w := New(8, func(b []byte) error { got.Write(b); return nil }, func(ok bool) error { finishOK = ok; return nil })
	_, err := w.Write([]byte("12345678abc"))
	require.NoError(t, err)
	w.Abort()
	require.Equal(t, "12345678", got.String(), "only the full chunk was handed over")
	require.False(t, finishOK)
	w.Fail(errors.New("late"))
	require.ErrorContains(t, w.Close(), "late")
}
