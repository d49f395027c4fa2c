package posthog

import (
	"errors"
	"strconv"
	"testing"
)

func TestParseTeamID(t *testing.T) {
	good := map[string]int64{"1": 1, "42": 42, "2147483647": MaxTeamID}
	for in, want := range good {
		got, err := ParseTeamID(in)
		if err != nil || got != want {
			t.Errorf("ParseTeamID(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "00001", "+5", "-1", " 5", "5 ", "2147483648",
		"9223372036854775807", "99999999999", "1e3", "0x10"} {
		if id, err := ParseTeamID(in); !errors.Is(err, ErrTeamID) {
			t.Errorf("ParseTeamID(%q) = %d, %v; want ErrTeamID", in, id, err)
		}
	}
}

func TestCheckTeamID(t *testing.T) {
	for _, id := range []int64{0, -1, MaxTeamID + 1, 1 << 62} {
		if !errors.Is(CheckTeamID(id), ErrTeamID) {
			t.Errorf("CheckTeamID(%d) accepted", id)
		}
	}
	if CheckTeamID(1) != nil || CheckTeamID(MaxTeamID) != nil {
		t.Error("CheckTeamID rejected a valid id")
	}
}

func FuzzParseTeamID(f *testing.F) {
	for _, s := range []string{"1", "2147483647", "2147483648", "+5", "00001", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseTeamID(s)
		if err != nil {
			if !errors.Is(err, ErrTeamID) {
				t.Fatalf("error %v does not wrap ErrTeamID", err)
			}
			return
		}
		if !ValidTeamID(id) || strconv.FormatInt(id, 10) != s {
			t.Fatalf("accepted %q as %d: not canonical", s, id)
		}
	})
}
