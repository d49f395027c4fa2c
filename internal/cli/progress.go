package cli

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/schollz/progressbar/v3"
)

// Plain progress lines, where stderr is not a terminal, come at most this often and
// at least at every tenth of the work.
const (
	progressLineEvery = 5 * time.Second
	progressLineShare = 10
)

// progress reports a long operation on stderr: a bar with the count, rate and ETA on
// a terminal (a spinner with count and rate when the total is unknown), plain periodic
// lines elsewhere, so a log or CI job sees it advance too.
type progress struct {
	mu    sync.Mutex
	bar   *progressbar.ProgressBar // nil when not a terminal
	w     io.Writer
	what  string // "rebuild"
	unit  string // "teams"
	desc  string
	total int64 // <= 0: unknown
	done  int64
	start time.Time
	// plain lines: when and at which tenth the last was written
	lastAt    time.Time
	lastShare int64
	now       func() time.Time
	finished  bool
}

// newProgress starts reporting what ("rebuild") over total units ("teams"); total <= 0
// is unknown.
func (e Env) newProgress(what, unit string, total int64) *progress {
	p := &progress{w: e.Stderr, what: what, unit: unit, total: total, now: time.Now}
	p.start = p.now()
	p.lastAt = p.start
	if !e.isTerminal(e.Stderr) {
		return p
	}
	colour := e.colour(e.Stderr)
	desc := what
	if colour {
		desc = "[cyan]" + what + "[reset]"
	}
	max := total
	if max <= 0 {
		max = -1
	}
	p.bar = progressbar.NewOptions64(max,
		progressbar.OptionSetWriter(e.Stderr),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionEnableColorCodes(colour),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString(unit),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetRenderBlankState(true),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSpinnerType(14),
		progressbar.OptionUseANSICodes(true),
	)
	return p
}

// Add counts n more units done.
func (p *progress) Add(n int64) { p.Set(p.count() + n) }

func (p *progress) count() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// Set sets the units done.
func (p *progress) Set(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.finished {
		return
	}
	p.done = n
	if p.bar != nil {
		if p.total > 0 && n > p.total {
			p.total = n
			p.bar.ChangeMax64(n)
		}
		_ = p.bar.Set64(n)
		return
	}
	p.maybeLine()
}

// Describe shows what is being worked on now ("team 42: 10,000 rows").
func (p *progress) Describe(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.desc = s
	if p.bar != nil {
		p.bar.Describe(p.what + ": " + s)
	}
}

// Print writes a line to w (stdout) without tearing the bar: the bar is cleared first
// and drawn again on the next update.
func (p *progress) Print(w io.Writer, format string, a ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		_ = p.bar.Clear()
	}
	fmt.Fprintf(w, format, a...)
}

// Finish ends the report: the bar is cleared, and without a terminal one last line
// says how much was done in how long.
func (p *progress) Finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.finished {
		return
	}
	p.finished = true
	if p.bar != nil {
		_ = p.bar.Finish()
		_ = p.bar.Clear()
		return
	}
	p.line("done")
}

// maybeLine writes a plain line when enough time or work has passed since the last.
func (p *progress) maybeLine() {
	now := p.now()
	share := int64(0)
	if p.total > 0 {
		share = p.done * progressLineShare / p.total
	}
	if now.Sub(p.lastAt) < progressLineEvery && share <= p.lastShare {
		return
	}
	p.lastAt, p.lastShare = now, share
	p.line("")
}

// line writes "what: done/total unit (pct%), rate unit/s, ETA d[, desc]".
func (p *progress) line(state string) {
	el := p.now().Sub(p.start)
	rate := float64(p.done) / max(el.Seconds(), 1e-9)
	s := fmt.Sprintf("%s: %s", p.what, humanize.Comma(p.done))
	if p.total > 0 {
		s += fmt.Sprintf("/%s %s (%d%%)", humanize.Comma(p.total), p.unit, 100*p.done/p.total)
	} else {
		s += " " + p.unit
	}
	s += fmt.Sprintf(", %s %s/s", humanize.CommafWithDigits(rate, 1), p.unit)
	switch {
	case state != "":
		s += fmt.Sprintf(", %s in %s", state, el.Round(time.Millisecond))
	case p.total > 0 && rate > 0:
		s += fmt.Sprintf(", ETA %s", time.Duration(float64(p.total-p.done)/rate*float64(time.Second)).Round(time.Second))
	}
	if p.desc != "" && state == "" {
		s += "; " + p.desc
	}
	fmt.Fprintln(p.w, s)
}
