package rebuild

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/flagwarden/flagwarden/internal/pyjson"
)

// maxProblems bounds the problems one build reports; the count is still exact.
const maxProblems = 20

// maxSkippedReported bounds the skipped flags one build lists; Skipped still counts all.
const maxSkippedReported = 100

// BuilderOptions configure the streaming builder.
type BuilderOptions struct {
	// PageSize is how many flags are read between two Progress calls. Default 5000.
	PageSize int
	// FailOnMalformed fails the build on the first flag the Rust reader would reject or
	// cohort problem instead of skipping and reporting it.
	FailOnMalformed bool
	// Progress, if set, is called after every page of rows and at the end (from the
	// goroutine that reads).
	Progress func(BuildProgress)
	// Contract is the PostHog cache contract the payloads follow. Default the newest.
	Contract Contract
	// MaxAttempts bounds how often a build restarts on its snapshot when the streaming
	// pass finds what the first pass could not predict. Default 4.
	MaxAttempts int
	// PredictionCacheBytes bounds the teams' last indexes the builder keeps to predict
	// their next builds from (see predictionCache). Default
	// DefaultPredictionCacheBytes; negative keeps none, so every build runs the full
	// first pass.
	PredictionCacheBytes int64
	// Predictions, if set, shares the teams' last indexes with other builders (replicas,
	// the next process): a build without a prediction of its own loads the stored one,
	// and every successful build stores its exact index.
	Predictions PredictionStore
	// LoadPredictionsOnly, with Predictions, loads the shared predictions but never
	// stores, extends or removes one: for the verifier, which must not write to a Redis
	// whose caches it checks.
	LoadPredictionsOnly bool
}

// BuildProgress is reported as a build streams.
type BuildProgress struct {
	Rows  int64
	Bytes int64
}

// SkippedFlag is a flag left out of both payloads because the Rust reader would
// refuse the whole team's payload with it.
type SkippedFlag struct {
	ID     int64  `json:"id"`
	Key    string `json:"key"`
	Reason string `json:"reason"`
	Detail string `json:"detail"`
}

// BuildStats is what one build produced.
type BuildStats struct {
	Team TeamInfo
	// Flags and Cohorts are what flags.json and the definitions carry: Flags counts
	// flags.json's flags, DefinitionFlags the definitions', Cohorts the definitions'
	// cohorts and FlagsCohorts flags.json's.
	Flags           int64
	DefinitionFlags int64
	Cohorts         int64
	FlagsCohorts    int64
	// Skipped counts flags left out of both payloads; SkippedFlags lists the first of
	// them with the reason.
	Skipped      int64
	SkippedFlags []SkippedFlag
	// SkippedByReason counts skipped flags by reason (the Skip* constants).
	SkippedByReason map[string]int64
	// Dropped counts flags PostHog's own serializer leaves out of the definitions.
	Dropped  int64
	Problems []string
	// ProblemCount counts every problem, also those beyond the reported ones.
	ProblemCount int64
	// Attempts is how many streaming passes the build took (1 unless the first pass's
	// prediction was wrong).
	Attempts int
	// FirstPass is how long the first pass took: the database extracting each flag's
	// references (its share of the build, with the client mostly idle), before the
	// streaming passes.
	FirstPass time.Duration
	// PredictionReused says the first attempt predicted from the team's previous build,
	// so the first pass extracted the references of the flags changed since only.
	// PredictionSource says whose build: PredictionPreviousBuild (this builder's),
	// PredictionShared (the shared store's), else PredictionReferences (none: the full
	// first pass).
	PredictionReused bool
	PredictionSource string
	// SharedLoad and SharedSave are what the build did with BuilderOptions.Predictions
	// (the Shared* values; empty: nothing), SharedError why an operation failed.
	SharedLoad, SharedSave, SharedError string
}

func (s *BuildStats) problem(format string, args ...any) {
	p := fmt.Sprintf(format, args...)
	if slices.Contains(s.Problems, p) {
		return // both payloads' cohort walks may meet the same cohort
	}
	s.ProblemCount++
	if len(s.Problems) < maxProblems {
		s.Problems = append(s.Problems, p)
	}
}

// MalformedError is a build failed because of bad data, with FailOnMalformed.
type MalformedError struct {
	TeamID int64
	What   string
}

func (e *MalformedError) Error() string { return fmt.Sprintf("team %d: %s", e.TeamID, e.What) }

// ErrMalformed matches every MalformedError with errors.Is.
var ErrMalformed = errors.New("malformed flag data")

// Is lets errors.Is(err, ErrMalformed) match.
func (e *MalformedError) Is(target error) bool { return target == ErrMalformed }

// Sink receives a build's payloads. A build that restarts asks for fresh writers: the
// previous attempt's bytes must then be discarded.
type Sink interface {
	Writers(attempt int) (flags, definitions io.Writer, err error)
}

// Builder streams a team's flags into both cache payloads with PostHog's exact bytes.
// Its memory is a few flag rows in flight, small write buffers, and the team's
// dependency-bearing flags and referenced cohorts, whatever the team's size.
type Builder struct {
	opts  BuilderOptions
	preds *predictionCache // nil: none kept
}

// NewBuilder returns a builder.
func NewBuilder(opts BuilderOptions) *Builder {
	opts.PageSize = cmp.Or(opts.PageSize, 5000)
	opts.Contract = cmp.Or(opts.Contract, NewestContract)
	opts.MaxAttempts = cmp.Or(opts.MaxAttempts, 4)
	opts.PredictionCacheBytes = cmp.Or(opts.PredictionCacheBytes, DefaultPredictionCacheBytes)
	b := &Builder{opts: opts}
	if opts.PredictionCacheBytes > 0 {
		b.preds = newPredictionCache(opts.PredictionCacheBytes)
	}
	return b
}

// Contract is the contract the builder writes.
func (b *Builder) Contract() Contract { return b.opts.Contract }

// Build reads team teamID from src and writes flags.json and the definitions
// (flags_with_cohorts.json) to the sink's writers. On error the writers hold a partial
// payload that the caller must discard.
func (b *Builder) Build(ctx context.Context, src FlagSource, teamID int64, sink Sink) (BuildStats, error) {
	var st BuildStats
	c := b.opts.Contract
	key := predictionKey{team: teamID, contract: c}
	last := b.preds.get(key)
	st.PredictionSource = PredictionPreviousBuild
	if last == nil && b.opts.Predictions != nil {
		last = b.loadShared(ctx, key, &st)
		st.PredictionSource = PredictionShared
	}
	if last == nil {
		st.PredictionSource = PredictionReferences
	}
	ro := ReadOptions{UpConvertLegacy: c.upConvertLegacy()}
	if last != nil {
		// A zero time (the last build saw no flags) extracts every flag's.
		ro.RefsChangedAfter = last.changed
	}
	rd, err := src.Open(ctx, teamID, ro)
	if err != nil {
		return st, err
	}
	defer rd.Close()
	st.Team = rd.Team()
	env := &buildEnv{c: c, team: st.Team}
	if env.surveys, err = rd.SurveyFlagIDs(ctx); err != nil {
		return st, err
	}
	slices.Sort(env.surveys)
	if env.groupTypes, err = rd.GroupTypes(ctx); err != nil {
		return st, err
	}
	firstPass := time.Now()
	pred, ids, changed, err := predict(ctx, rd, c, env.surveys, last)
	if err != nil {
		return st, err
	}
	st.FirstPass = time.Since(firstPass)
	st.PredictionReused = last != nil
	first := pred
	if changed.After(st.Team.Watermark) {
		st.Team.Watermark = changed.UTC()
		env.team = st.Team
	}
	if ids.usable() {
		env.ids = ids
	}
	for attempt := 1; ; attempt++ {
		st = BuildStats{Team: st.Team, Attempts: attempt, FirstPass: st.FirstPass, PredictionReused: st.PredictionReused,
			PredictionSource: st.PredictionSource, SharedLoad: st.SharedLoad, SharedError: st.SharedError}
		fw, dw, err := sink.Writers(attempt)
		if err != nil {
			return st, err
		}
		exact, err := b.attempt(ctx, rd, env, pred, fw, dw, &st)
		if err != nil {
			return st, err
		}
		if exact.sameAs(pred) {
			st.Dropped = int64(len(exact.drop))
			lb := lastBuild{index: exact, changed: changed}
			b.preds.put(key, lb)
			// The stored entry is this one when the build found what it predicted from
			// it and no flag changed since.
			unchanged := last != nil && attempt == 1 && first == last.index && changed.Equal(last.changed)
			b.saveShared(ctx, key, lb, unchanged, &st)
			return st, nil
		}
		if attempt >= b.opts.MaxAttempts {
			b.preds.forget(key)
			b.forgetShared(ctx, key, &st)
			return st, fmt.Errorf("team %d: the build did not settle in %d attempts (is the data changing under a snapshot?)", teamID, attempt)
		}
		pred = exact
	}
}

// buildEnv is what every attempt of one build shares.
type buildEnv struct {
	c          Contract
	team       TeamInfo
	surveys    []int64
	groupTypes []GroupType
	// ids are evaluation_metadata's ids from the first pass, or nil: the source's
	// FlagIDs then streams them.
	ids *idSet
}

func (b *Builder) attempt(ctx context.Context, rd TeamReader, env *buildEnv, pred *teamIndex, fw, dw io.Writer, st *BuildStats) (*teamIndex, error) {
	c := env.c
	fo := newOut(fw)
	do := newOut(dw)
	res, err := newDepResolver(ctx, rd, c, pred, env.surveys)
	if err != nil {
		return nil, err
	}
	var fc *flagsCohorts
	if c.flagsWrapped() {
		if fc, err = walkFlagsCohorts(ctx, rd, pred.fjCohorts, st); err != nil {
			return nil, err
		}
	}
	dc, err := walkDefCohorts(ctx, rd, pred.defCohortsAll, st)
	if err != nil {
		return nil, err
	}
	if b.opts.FailOnMalformed && st.ProblemCount > 0 {
		return nil, &MalformedError{TeamID: env.team.ID, What: st.Problems[0]}
	}
	var restartSkips []int64
	if c.flagsWrapped() {
		fo.str(`{"cohorts": [`)
		if err := writeFlagsCohorts(ctx, rd, fc, fo, st); err != nil {
			return nil, err
		}
		fo.str(`], "evaluation_metadata": `)
		meta := computeEvalMeta(res)
		if restartSkips, err = writeEvalMeta(ctx, env.idStream(rd), meta, res, fo); err != nil {
			return nil, err
		}
		fo.str(`, "flags": [`)
	} else {
		fo.str(`{"flags": [`)
	}
	do.str(`{"cohorts": {`)
	if err := writeDefCohorts(ctx, rd, dc, pred.defCohortsKept, do, st); err != nil {
		return nil, err
	}
	dc.printed = printCache{} // printed; the streaming pass needs only the walk's verdicts
	do.str(`}, "flags": [`)

	s := &streamer{b: b, c: c, env: env, pred: pred, ch: newChainer(res), dc: dc, fo: fo, do: do, st: st,
		exact: newIndexer(c, env.surveys, pred)}
	if err := s.run(ctx, rd); err != nil {
		return nil, err
	}
	exact := s.exact.finish()
	for _, id := range restartSkips {
		exact.skip[id] = skipInfo{code: SkipDependencyLoop, detail: "every flag of flags.json is in a dependency cycle: the Rust reader refuses empty dependency stages"}
	}

	fo.str("]}")
	do.str(`], "group_type_mapping": {`)
	gts := slices.Clone(env.groupTypes)
	slices.SortFunc(gts, func(a, b GroupType) int { return cmp.Compare(strconv.Itoa(a.Index), strconv.Itoa(b.Index)) })
	for i, g := range gts {
		if i > 0 {
			do.str(", ")
		}
		do.buf = pyjson.AppendString(do.buf, strconv.Itoa(g.Index))
		do.buf = pyjson.AppendString(append(do.buf, ": "...), g.Type)
	}
	do.str("}")
	if c.teamSettings() {
		do.buf = strconv.AppendBool(append(do.buf, `, "minimal_flag_called_events": `...), env.team.MinimalFlagCalledEvents)
		do.buf = strconv.AppendInt(append(do.buf, `, "property_matching_version": `...), env.team.PropertyMatchingVersion, 10)
	}
	do.str("}")
	fo.flush()
	do.flush()
	if err := cmp.Or(fo.err, do.err); err != nil {
		return nil, err
	}
	st.Skipped = int64(len(exact.skip))
	st.SkippedFlags = st.SkippedFlags[:0]
	st.SkippedByReason = nil
	for _, si := range exact.skip {
		if st.SkippedByReason == nil {
			st.SkippedByReason = map[string]int64{}
		}
		st.SkippedByReason[si.code]++
	}
	for _, id := range slices.Sorted(mapKeys(exact.skip)) {
		if len(st.SkippedFlags) == maxSkippedReported {
			break
		}
		si := exact.skip[id]
		st.SkippedFlags = append(st.SkippedFlags, SkippedFlag{ID: id, Key: si.key, Reason: si.code, Detail: si.detail})
	}
	return exact, nil
}

func mapKeys[V any](m map[int64]V) func(func(int64) bool) {
	return func(yield func(int64) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func writeFlagsCohorts(ctx context.Context, rd TeamReader, fc *flagsCohorts, fo *out, st *BuildStats) error {
	var docs cohortDocs
	var buf []byte
	emit := func(b []byte) {
		if b == nil {
			return // left out of flags.json, reported by the walk
		}
		if st.FlagsCohorts > 0 {
			fo.str(", ")
		}
		st.FlagsCohorts++
		fo.write(b)
	}
	for _, level := range fc.levels {
		cached := true
		for _, id := range level {
			if _, ok := fc.printed.get(id); !ok {
				cached = false
				break
			}
		}
		if cached {
			for _, id := range level {
				b, _ := fc.printed.get(id)
				emit(b)
			}
			continue
		}
		err := eachCohort(ctx, rd, level, false, func(c *CohortRow) error {
			if docs.parse(c) != nil || checkCohortRow(c, &docs) != nil {
				return nil
			}
			buf = appendFlagsCohort(buf[:0], c, &docs)
			emit(buf)
			return fo.err
		})
		if err != nil {
			return err
		}
	}
	return fo.err
}

// writeDefCohorts prints {"<id>": cohort.properties.to_dict(), …} in the order the ids
// sort as strings, from the walk's prints or, past their budget, reading the cohorts
// back a chunk at a time.
func writeDefCohorts(ctx context.Context, rd TeamReader, dc *defCohorts, kept []int64, do *out, st *BuildStats) error {
	ids := dc.shipped(kept)
	var docs cohortDocs
	const chunk = 100
	printed := map[int64][]byte{}
	for start := 0; start < len(ids); start += chunk {
		part := ids[start:min(start+chunk, len(ids))]
		clear(printed)
		var missing []int64
		for _, id := range part {
			if b, ok := dc.printed.get(id); ok {
				printed[id] = b
			} else {
				missing = append(missing, id)
			}
		}
		if len(missing) > 0 {
			slices.Sort(missing)
			err := rd.Cohorts(ctx, missing, true, func(c *CohortRow) error {
				if err := docs.parse(c); err != nil {
					return nil
				}
				props, err := docs.properties()
				if err != nil {
					return nil
				}
				printed[c.ID] = props.appendDict(nil)
				return nil
			})
			if err != nil {
				return err
			}
		}
		for _, id := range part {
			p, ok := printed[id]
			if !ok {
				continue
			}
			if st.Cohorts > 0 {
				do.str(", ")
			}
			do.buf = pyjson.AppendString(do.buf, strconv.FormatInt(id, 10))
			do.str(": ")
			do.write(p)
			st.Cohorts++
		}
		if do.err != nil {
			return do.err
		}
	}
	return nil
}

// idStream calls fn with evaluation_metadata's ids in numeric order, then by text.
type idStream func(ctx context.Context, fn func(id int64, byText bool) error) error

// idStream is the first pass's ids when they were kept, else the source's id streams.
func (env *buildEnv) idStream(rd TeamReader) idStream {
	if env.ids != nil {
		return env.ids.each
	}
	return func(ctx context.Context, fn func(int64, bool) error) error {
		return rd.FlagIDs(ctx, env.c.idFilter(), fn)
	}
}

// writeEvalMeta prints evaluation_metadata: stage 0 and the transitive dependencies
// come from id streams in the order the payload needs (numeric ids, then ids as
// strings); the few flags with dependencies come from the index. It returns the flags
// to skip on a restart when every flag is in a dependency cycle.
func writeEvalMeta(ctx context.Context, ids idStream, m *evalMeta, res *depResolver, fo *out) ([]int64, error) {
	fo.str(`{"dependency_stages": [`)
	n0, n := 0, 0
	var restart []int64
	texts := false
	// between closes stage 0 and prints what comes from the index, before the ids come
	// again as strings.
	between := func() {
		texts = true
		if n0 > 0 {
			fo.buf = append(fo.buf, ']')
			for _, s := range m.stages {
				fo.buf = appendIDList(append(fo.buf, ", "...), s)
			}
		} else {
			restart = m.cycled()
		}
		fo.str(`], "flags_with_missing_deps": `)
		fo.buf = appendIDList(fo.buf, m.missing)
		fo.str(`, "transitive_deps": {`)
	}
	err := ids(ctx, func(id int64, byText bool) error {
		if res.skipped(id) {
			return nil
		}
		switch {
		case !byText:
			if m.isInner(id) {
				return nil
			}
			if n0 == 0 {
				fo.buf = append(fo.buf, '[')
			} else {
				fo.buf = append(fo.buf, ", "...)
			}
			fo.buf = strconv.AppendInt(fo.buf, id, 10)
			n0++
		default:
			if !texts {
				between()
			}
			if n > 0 {
				fo.buf = append(fo.buf, ", "...)
			}
			n++
			fo.buf = strconv.AppendInt(append(fo.buf, '"'), id, 10)
			fo.buf = m.appendTransitive(append(fo.buf, `": `...), id)
		}
		if len(fo.buf) >= outFlush {
			fo.flush()
		}
		return fo.err
	})
	if err != nil {
		return nil, err
	}
	if !texts {
		between()
	}
	fo.str("}}")
	return restart, fo.err
}

// out is a small write buffer in front of a payload stream.
type out struct {
	w   io.Writer
	buf []byte
	n   atomic.Int64
	err error
}

const outFlush = 32 << 10

func newOut(w io.Writer) *out { return &out{w: w, buf: make([]byte, 0, outFlush*2)} }

func (o *out) write(b []byte) {
	o.buf = append(o.buf, b...)
	if len(o.buf) >= outFlush {
		o.flush()
	}
}

func (o *out) str(s string) {
	o.buf = append(o.buf, s...)
	if len(o.buf) >= outFlush {
		o.flush()
	}
}

func (o *out) flush() {
	if o.err == nil && len(o.buf) > 0 {
		_, o.err = o.w.Write(o.buf)
		o.n.Add(int64(len(o.buf)))
	}
	o.buf = o.buf[:0]
}

func (o *out) written() int64 { return o.n.Load() + int64(len(o.buf)) }

// BufferSink keeps both payloads in memory; a restart starts them over. For tests and
// small tools.
type BufferSink struct {
	Flags, Definitions bytes.Buffer
}

// Writers implements Sink.
func (s *BufferSink) Writers(int) (io.Writer, io.Writer, error) {
	s.Flags.Reset()
	s.Definitions.Reset()
	return &s.Flags, &s.Definitions, nil
}

// CountSink discards both payloads and counts their bytes (dry runs, benchmarks).
type CountSink struct {
	FlagsBytes, DefinitionsBytes int64
}

type countTo struct{ n *int64 }

func (w countTo) Write(b []byte) (int, error) { *w.n += int64(len(b)); return len(b), nil }

// Writers implements Sink.
func (s *CountSink) Writers(int) (io.Writer, io.Writer, error) {
	s.FlagsBytes, s.DefinitionsBytes = 0, 0
	return countTo{&s.FlagsBytes}, countTo{&s.DefinitionsBytes}, nil
}
