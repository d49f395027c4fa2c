//go:build race

package detectors

// raceEnabled shortens the quality benchmark under the race detector, which slows the
// replay about tenfold.
const raceEnabled = true
