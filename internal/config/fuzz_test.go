package config

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// FuzzParse feeds arbitrary files to the loader: it must return a configuration or an
// error, never panic, and a configuration it accepts holds no negative size.
func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal))
	f.Add([]byte(minimal + "rebuild:\n  memory_budget: 1e30GiB\n"))
	f.Add([]byte(minimal + "rebuild:\n  build_timeout: 9999999999h\n"))
	f.Add([]byte(minimal + "collectors:\n  celery:\n    interval: -1s\n"))
	f.Add([]byte("{"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			return
		}
		cfg, err := Parse(bytes.NewReader(data), nil)
		if err != nil {
			require.NotEmpty(t, err.Error())
			return
		}
		walkSizes(t, reflect.ValueOf(cfg), "config")
	})
}

func walkSizes(t *testing.T, v reflect.Value, path string) {
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			walkSizes(t, v.Field(i), path+"."+v.Type().Field(i).Name)
		}
	case reflect.Slice:
		for i := range v.Len() {
			walkSizes(t, v.Index(i), path)
		}
	case reflect.Int64:
		if v.Type() == reflect.TypeFor[ByteSize]() && v.Int() < 0 {
			t.Fatalf("%s: accepted a negative size %d", path, v.Int())
		}
	}
}

// FuzzParseByteSize: an accepted size is non-negative and reads back from its own
// rendering; a rejected one says why.
func FuzzParseByteSize(f *testing.F) {
	for _, s := range []string{"8GiB", "1.5GB", "1048576", "1e30GiB", "-1KiB", "NaNMiB", "InfB", "99999999999999999999", " 3 MiB "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseByteSize(s)
		if err != nil {
			require.Contains(t, err.Error(), "invalid byte size")
			return
		}
		require.GreaterOrEqual(t, int64(v), int64(0))
		back, err := ParseByteSize(v.String())
		require.NoError(t, err)
		require.Equal(t, v, back)
	})
}

// FuzzParseDuration accepts exactly what time.ParseDuration accepts, with the same value.
func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"30s", "1h30m", "9999999999h", "1.5ms", "5 minutes", "-3s", "2562047h47m16.854775807s", "2562048h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, wantErr := time.ParseDuration(strings.TrimSpace(s))
		got, err := ParseDuration(s)
		if wantErr != nil {
			require.Error(t, err)
			require.Contains(t, err.Error(), "invalid duration")
			return
		}
		require.NoError(t, err)
		require.Equal(t, want, got)
	})
}
