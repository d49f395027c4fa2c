package app

import (
	"github.com/flagwarden/flagwarden/internal/config"
	"github.com/flagwarden/flagwarden/internal/loop"
)

// This file turns the config file's types into the components' own Options: the only
// place besides the CLI where both are known, so that a component never imports the
// config loader.

// loopTiming is a loop's timing from its config section.
func loopTiming(c config.Loop) loop.Timing {
	return loop.Timing{Interval: c.Interval, Timeout: c.Timeout, Jitter: c.Jitter}
}
