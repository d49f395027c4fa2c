package app

import (
	"testing"

	"github.com/flagwarden/flagwarden/internal/config"
	"github.com/flagwarden/flagwarden/web"
)

// The config file says 0 for "none" where the collector says a negative number: a 0
// passed through unchanged would silently turn into the collector's default.
func TestCeleryOptionsTurnsZeroIntoOff(t *testing.T) {
	b := config.Default().Broker
	b.SampleSize, b.SampleQueues, b.UnackedScanLimit = 0, 0, 0
	o := celeryOptions(b)
	if o.SampleSize >= 0 || o.SampleQueues >= 0 || o.UnackedScanLimit >= 0 {
		t.Fatalf("0 in the config must turn the part off: %+v", o)
	}
	b = config.Default().Broker
	o = celeryOptions(b)
	if o.SampleSize != b.SampleSize || o.SampleQueues != b.SampleQueues || o.UnackedScanLimit != b.UnackedScanLimit {
		t.Fatalf("set values must pass through: %+v from %+v", o, b)
	}
	if o.Sep != b.Sep || o.GlobalKeyPrefix != b.GlobalKeyPrefix || o.TeamKwarg != b.TeamArg.Kwarg || o.TeamPosition != b.TeamArg.Position {
		t.Fatalf("kombu layout must pass through: %+v from %+v", o, b)
	}
}

func TestWebAuthKeepsEveryToken(t *testing.T) {
	a := config.Auth{OpenReads: true, Tokens: []config.Token{
		{Name: "viewer", Token: "read-0123456789abcdef", Role: config.RoleRead},
		{Name: "oncall", Token: "operate-0123456789abcdef", Role: config.RoleOperate},
	}}
	w := webAuth(a)
	if !w.OpenReads || len(w.Tokens) != 2 {
		t.Fatalf("open reads and both tokens must pass through: %+v", w)
	}
	for i, got := range w.Tokens {
		want := a.Tokens[i]
		if got.Name != want.Name || got.Token != string(want.Token) || string(got.Role) != string(want.Role) {
			t.Fatalf("token %d: got %+v from %+v", i, got, want)
		}
	}
	if w.Tokens[0].Role != web.RoleRead || w.Tokens[1].Role != web.RoleOperate {
		t.Fatalf("roles must be the API's own: %+v", w.Tokens)
	}
}
