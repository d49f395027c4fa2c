// Package clock is the one clock flagwarden's freshness path reads: build times, the
// cache-freshness collector, the stale sweep, the detectors' now. It is the wall clock
// in serve and a simulated clock in the demo, handed to each component the way River's
// Archetype hands out its time generator, so that a simulation running faster than
// real time judges caches by the same time that stamped them.
//
// Parts that must keep real time (River's scheduling, loop tickers, Alertmanager,
// Redis expiries) keep the wall clock; FromWall and ToWall move their readings across.
package clock

import "time"

// Clock tells the time.
type Clock interface {
	// Now is the current time on this clock.
	Now() time.Time
	// FromWall maps a wall-clock reading onto this clock; ToWall maps back.
	FromWall(time.Time) time.Time
	ToWall(time.Time) time.Time
}

// Wall is the real clock; FromWall and ToWall are the identity.
var Wall Clock = wall{}

type wall struct{}

func (wall) Now() time.Time                 { return time.Now() }
func (wall) FromWall(t time.Time) time.Time { return t }
func (wall) ToWall(t time.Time) time.Time   { return t }

// Func is a clock read from a function, on the wall clock's scale (FromWall and
// ToWall are the identity): a fixed time in tests, say.
type Func func() time.Time

func (f Func) Now() time.Time               { return f() }
func (Func) FromWall(t time.Time) time.Time { return t }
func (Func) ToWall(t time.Time) time.Time   { return t }

// Or returns c, or Wall when c is nil.
func Or(c Clock) Clock {
	if c == nil {
		return Wall
	}
	return c
}

// Scaled is a simulated clock: it starts at an origin and runs speed times faster than
// the wall clock from the moment it is created. It is immutable, so safe for
// concurrent use.
type Scaled struct {
	wall0   time.Time
	sim0    time.Time
	speed   float64
	wallNow func() time.Time
}

// NewScaled returns a clock that reads origin now and advances speed simulated seconds
// per real second. speed must be positive.
func NewScaled(origin time.Time, speed float64) *Scaled {
	return NewScaledFrom(time.Now(), origin, speed, time.Now)
}

// NewScaledFrom is NewScaled with the wall clock given: the simulated clock reads
// origin when wallNow reads wall0. Tests drive wallNow by hand.
func NewScaledFrom(wall0, origin time.Time, speed float64, wallNow func() time.Time) *Scaled {
	return &Scaled{wall0: wall0, sim0: origin, speed: speed, wallNow: wallNow}
}

// Now is the simulated time.
func (s *Scaled) Now() time.Time { return s.FromWall(s.wallNow()) }

// FromWall maps a wall-clock time onto the simulated clock.
func (s *Scaled) FromWall(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return s.sim0.Add(time.Duration(float64(t.Sub(s.wall0)) * s.speed))
}

// ToWall maps a simulated time onto the wall clock.
func (s *Scaled) ToWall(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return s.wall0.Add(time.Duration(float64(t.Sub(s.sim0)) / s.speed))
}

// Speed is simulated seconds per real second.
func (s *Scaled) Speed() float64 { return s.speed }

// WallDuration is how long d of simulated time takes in real time.
func (s *Scaled) WallDuration(d time.Duration) time.Duration {
	return time.Duration(float64(d) / s.speed)
}
