package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// ByteSize is a number of bytes written as 512MiB, 8GiB, 1.5GB or a plain integer.
type ByteSize int64

var byteUnits = []struct {
	suffix string
	mult   float64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"B", 1},
}

// maxByteSize is the largest size a ByteSize holds, as printed in errors.
const maxByteSize = ByteSize(math.MaxInt64)

const byteSizeHint = "want a non-negative number with B, KiB, MiB, GiB, TiB, KB, MB, GB or TB"

// ParseByteSize parses "8GiB", "512MiB", "1.5GB" or "1048576". Sizes that do not fit
// in 63 bits are an error, not a wrapped-around number.
func ParseByteSize(s string) (ByteSize, error) {
	s = strings.TrimSpace(s)
	for _, u := range byteUnits {
		num, ok := strings.CutSuffix(s, u.suffix)
		if !ok {
			continue
		}
		num = strings.TrimSpace(num)
		f, err := strconv.ParseFloat(num, 64)
		switch {
		case num == "" || (err != nil && !errors.Is(err, strconv.ErrRange)) || math.IsNaN(f):
			return 0, fmt.Errorf("invalid byte size %q (%s)", s, byteSizeHint)
		case f < 0:
			return 0, fmt.Errorf("invalid byte size %q: must not be negative", s)
		}
		// float64(MaxInt64) rounds up to 2^63, so >= is the overflow test.
		v := f * u.mult
		if err != nil || v >= math.MaxInt64 {
			return 0, fmt.Errorf("invalid byte size %q: too large (at most %d bytes, about 8EiB)", s, int64(maxByteSize))
		}
		return ByteSize(v), nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	switch {
	case errors.Is(err, strconv.ErrRange) && !strings.HasPrefix(s, "-"):
		return 0, fmt.Errorf("invalid byte size %q: too large (at most %d bytes, about 8EiB)", s, int64(maxByteSize))
	case err != nil:
		return 0, fmt.Errorf("invalid byte size %q (%s)", s, byteSizeHint)
	case n < 0:
		return 0, fmt.Errorf("invalid byte size %q: must not be negative", s)
	}
	return ByteSize(n), nil
}

// UnmarshalText lets YAML and env values be written with units.
func (b *ByteSize) UnmarshalText(text []byte) error {
	v, err := ParseByteSize(string(text))
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// UnmarshalYAML is UnmarshalText that knows the value's line, so that an error names
// the line and key like every other problem in the file.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &valueError{line: n.Line, err: fmt.Errorf("invalid byte size: %s", byteSizeHint)}
	}
	if err := b.UnmarshalText([]byte(n.Value)); err != nil {
		return &valueError{line: n.Line, err: err}
	}
	return nil
}

// valueError is a bad value at a line of the file.
type valueError struct {
	line int
	err  error
}

func (e *valueError) Error() string { return fmt.Sprintf("line %d: %v", e.line, e.err) }
func (e *valueError) Unwrap() error { return e.err }

// MarshalText renders the size in the largest binary unit that divides it.
func (b ByteSize) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

func (b ByteSize) String() string {
	for _, u := range []struct {
		s string
		m int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b != 0 && int64(b)%u.m == 0 {
			return strconv.FormatInt(int64(b)/u.m, 10) + u.s
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// ParseDuration is time.ParseDuration with errors that say what is wrong: a value
// beyond what a duration holds (about 290 years) is "too large", not "invalid".
func ParseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err == nil {
		return d, nil
	}
	// time.ParseDuration reports overflow as "invalid duration" too; tell it apart by
	// reparsing the number with a float, which does not overflow.
	if durationOverflows(strings.TrimSpace(s)) {
		return 0, fmt.Errorf("invalid duration %q: too large (at most %s)", s, time.Duration(math.MaxInt64))
	}
	return 0, fmt.Errorf("invalid duration %q (want a number with a unit: ns, us, ms, s, m or h, as in 30s, 5m or 1h30m)", s)
}

// durationOverflows reports whether s is a well-formed duration whose value does not
// fit in a time.Duration.
func durationOverflows(s string) bool {
	s = strings.TrimLeft(s, "+-")
	units := []struct {
		suffix string
		d      float64
	}{{"ns", 1}, {"us", 1e3}, {"µs", 1e3}, {"μs", 1e3}, {"ms", 1e6}, {"s", 1e9}, {"m", 60e9}, {"h", 3600e9}}
	total := 0.0
	for s != "" {
		i := 0
		for i < len(s) && (s[i] == '.' || (s[i] >= '0' && s[i] <= '9')) {
			i++
		}
		if i == 0 {
			return false
		}
		f, err := strconv.ParseFloat(s[:i], 64)
		if err != nil {
			return false
		}
		s = s[i:]
		matched := false
		for _, u := range units { // two-letter units come first: "ms" is not "m"
			if strings.HasPrefix(s, u.suffix) {
				total += f * u.d
				s = s[len(u.suffix):]
				matched = true
				break
			}
		}
		if !matched {
			return false
		}
	}
	return total >= math.MaxInt64
}
