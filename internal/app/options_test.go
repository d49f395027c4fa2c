package app

import (
	"testing"

	"github.com/flagwarden/flagwarden/internal/config"
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
