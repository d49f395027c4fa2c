package rebuild

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/flagwarden/flagwarden/internal/pyjson"
)

// The streaming pass: one goroutine reads flag rows page by page while another checks,
// encodes and writes them, so reading and encoding overlap on two cores. Rows travel
// in a few recycled batches, which bounds the memory in flight.

const (
	batchRows  = 128
	batchBytes = 128 << 10
	batchCount = 3
)

type rowBatch struct {
	rows  []FlagRow
	vals  []rowVals  // what the rows' pointers point at, so that a copy allocates nothing
	spans [][2]int32 // filters of each row in arena; -1: NULL
	arena []byte
}

type rowVals struct {
	continuity, encrypted, remote bool
	version, rollout              int64
	runtime, bucketing            string
}

func newBatch() *rowBatch {
	return &rowBatch{rows: make([]FlagRow, 0, batchRows), vals: make([]rowVals, batchRows), arena: make([]byte, 0, batchBytes)}
}

func (b *rowBatch) reset() {
	b.rows, b.spans, b.arena = b.rows[:0], b.spans[:0], b.arena[:0]
	if cap(b.arena) > 4*batchBytes {
		b.arena = make([]byte, 0, batchBytes) // let an outsized row's buffer go
	}
}

func (b *rowBatch) full() bool { return len(b.rows) >= batchRows || len(b.arena) >= batchBytes }

// add copies a row the source may reuse.
func (b *rowBatch) add(r *FlagRow) {
	c := *r
	c.Filters = nil
	if len(r.Tags) > 0 {
		c.Tags = slices.Clone(r.Tags)
	}
	v := &b.vals[len(b.rows)]
	c.EnsureExperienceContinuity = copyTo(r.EnsureExperienceContinuity, &v.continuity)
	c.HasEncryptedPayloads = copyTo(r.HasEncryptedPayloads, &v.encrypted)
	c.IsRemoteConfiguration = copyTo(r.IsRemoteConfiguration, &v.remote)
	c.Version = copyTo(r.Version, &v.version)
	c.RolloutPercentage = copyTo(r.RolloutPercentage, &v.rollout)
	c.EvaluationRuntime = copyTo(r.EvaluationRuntime, &v.runtime)
	c.BucketingIdentifier = copyTo(r.BucketingIdentifier, &v.bucketing)
	span := [2]int32{-1, -1}
	if r.Filters != nil {
		span[0] = int32(len(b.arena))
		b.arena = append(b.arena, r.Filters...)
		span[1] = int32(len(b.arena))
	}
	b.rows = append(b.rows, c)
	b.spans = append(b.spans, span)
}

func (b *rowBatch) seal() {
	for i, sp := range b.spans {
		if sp[0] >= 0 {
			b.rows[i].Filters = b.arena[sp[0]:sp[1]:sp[1]]
		}
	}
}

// copyTo copies *p into dst and returns dst, or nil for nil.
func copyTo[T any](p *T, dst *T) *T {
	if p == nil {
		return nil
	}
	*dst = *p
	return dst
}

type streamer struct {
	b     *Builder
	c     Contract
	env   *buildEnv
	pred  *teamIndex
	ch    *chainer
	dc    *defCohorts
	fo    *out
	do    *out
	st    *BuildStats
	exact *indexer

	// mismatch: the prediction was wrong, so this attempt's payloads are discarded;
	// the pass goes on only to complete the exact index.
	mismatch bool
	bytes    atomic.Int64

	doc, legacy pyjson.Doc
	legacyBuf   []byte
	props       []pyjson.Node
	head, tail  []byte
	fbuf, dbuf  []byte
	ov          flagPropOverrides
	fields      []labelledField
	refs        flagRefs
}

func (s *streamer) run(ctx context.Context, rd TeamReader) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	full := make(chan *rowBatch, batchCount)
	free := make(chan *rowBatch, batchCount)
	for range batchCount {
		free <- newBatch()
	}
	var readErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(full)
		readErr = s.read(ctx, rd, full, free)
	}()
	var encErr error
	for batch := range full {
		if encErr == nil {
			for i := range batch.rows {
				if encErr = s.row(&batch.rows[i]); encErr != nil {
					cancel() // stop the reader; drain what it already sent
					break
				}
			}
			s.bytes.Store(s.fo.written() + s.do.written())
		}
		batch.reset()
		free <- batch
	}
	wg.Wait()
	if encErr != nil {
		return encErr
	}
	return readErr
}

// read runs on its own goroutine: pages of rows into batches.
func (s *streamer) read(ctx context.Context, rd TeamReader, full, free chan *rowBatch) error {
	var cur *rowBatch
	take := func() error {
		select {
		case cur = <-free:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	send := func() error {
		cur.seal()
		select {
		case full <- cur:
			cur = nil
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := take(); err != nil {
		return err
	}
	var rows int64
	page := int64(s.b.opts.PageSize)
	progress := func() {
		if s.b.opts.Progress != nil {
			s.b.opts.Progress(BuildProgress{Rows: rows, Bytes: s.bytes.Load()})
		}
	}
	err := rd.Flags(ctx, func(r *FlagRow) error {
		cur.add(r)
		if rows++; rows%page == 0 {
			progress()
		}
		if cur.full() {
			if err := send(); err != nil {
				return err
			}
			return take()
		}
		return nil
	})
	if err != nil {
		return err
	}
	if rows%page != 0 {
		progress()
	}
	if len(cur.rows) > 0 {
		return send()
	}
	return nil
}

// row checks, classifies and writes one flag.
func (s *streamer) row(f *FlagRow) error {
	c := s.c
	encrypted := deref(f.HasEncryptedPayloads)
	remote := deref(f.IsRemoteConfiguration)
	eff, prob := s.filters(f)
	refs := &s.refs
	refs.reset()
	nullProps := false
	if prob == nil {
		s.props = s.props[:0]
		eff.Root().Get("groups").Elems(func(g pyjson.Node) bool {
			props := g.Get("properties")
			nullProps = nullProps || props.Valid() && props.Kind() == pyjson.Null
			props.Elems(func(p pyjson.Node) bool {
				if p.Kind() == pyjson.Object {
					s.props = append(s.props, p)
				}
				return true
			})
			return true
		})
		readRefs(s.props, refs)
		if refs.badKey != "" {
			prob = rustErr(SkipShape, "a flag property key %s is not a string", refs.badKey)
		}
	}
	skipped := prob != nil
	drop := ""
	if !skipped && c.inDefinitions(encrypted, remote) && !s.exact.survey(f.ID) {
		switch {
		case refs.badCohort != "":
			drop = "cohort value " + refs.badCohort + " is not an id int() accepts"
		case nullProps:
			drop = dropNullProperties
		default:
			for _, id := range refs.cohorts {
				if why := s.dc.brokenRef(id); why != "" {
					drop = why
					break
				}
			}
		}
	}
	s.exact.addFlag(f.ID, f.Key, f.Active, encrypted, remote, refs, skipped, drop)
	if skipped {
		s.exact.x.skip[f.ID] = skipInfo{key: f.Key, code: prob.code, detail: prob.detail}
		if s.b.opts.FailOnMalformed {
			return &MalformedError{TeamID: s.env.team.ID, What: fmt.Sprintf("flag %d (%s): %s", f.ID, f.Key, prob.detail)}
		}
	}
	_, predSkipped := s.pred.skip[f.ID]
	_, predDropped := s.pred.drop[f.ID]
	if predSkipped != skipped || predDropped != (drop != "") {
		s.mismatch = true
	}
	if s.mismatch || skipped {
		return nil
	}
	inFJ := c.inFlags(f.Active, encrypted)
	inDefs := c.inDefinitions(encrypted, remote) && !s.exact.survey(f.ID) && drop == ""
	if !inFJ && !inDefs {
		return nil
	}
	root := eff.Root()
	s.head, s.tail = s.appendFields(s.head[:0], s.tail[:0], f)
	s.fbuf = eff.Append(s.fbuf[:0], root, nil)
	if inFJ {
		if s.st.Flags > 0 {
			s.fo.str(", ")
		}
		s.st.Flags++
		s.fo.write(s.head)
		s.fo.write(s.fbuf)
		s.fo.write(s.tail)
	}
	if inDefs {
		filters := s.fbuf
		if len(refs.flagKeys) > 0 && s.ov.build(root, s.ch) { // only flag properties are rewritten
			s.dbuf = eff.Append(s.dbuf[:0], root, &s.ov)
			filters = s.dbuf
		}
		if s.st.DefinitionFlags > 0 {
			s.do.str(", ")
		}
		s.st.DefinitionFlags++
		s.do.write(s.head)
		s.do.write(filters)
		s.do.write(s.tail)
	}
	if err := errors.Join(s.fo.err, s.do.err); err != nil {
		return err
	}
	return nil
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// filters parses a flag's filters as get_filters() returns them and checks them
// against the Rust reader's contract.
func (s *streamer) filters(f *FlagRow) (*pyjson.Doc, *rustProblem) {
	if f.Filters == nil {
		return nil, rustErr(SkipNullFilters, "filters are NULL")
	}
	if err := s.doc.Parse(f.Filters); err != nil {
		return nil, rustErr(SkipInvalidJSON, "filters are not JSON: %v", err)
	}
	eff := &s.doc
	if root := s.doc.Root(); s.c.upConvertLegacy() && root.Kind() == pyjson.Object && !root.Has("groups") {
		// get_filters(): {"groups": [{"properties": filters.get("properties", []),
		// "rollout_percentage": rollout_percentage}]}; the row's other keys are gone.
		b := append(s.legacyBuf[:0], `{"groups": [{"properties": `...)
		if p := root.Get("properties"); p.Valid() {
			b = append(b, p.Raw()...)
		} else {
			b = append(b, "[]"...)
		}
		b = appendOptInt(append(b, `, "rollout_percentage": `...), f.RolloutPercentage)
		s.legacyBuf = append(b, "}]}"...)
		if err := s.legacy.Parse(s.legacyBuf); err != nil {
			return nil, rustErr(SkipInvalidJSON, "up-converted filters are not JSON: %v", err)
		}
		eff = &s.legacy
	}
	if p := checkFlagFilters(eff); p != nil {
		return nil, p
	}
	return eff, nil
}

// labelledField is a flag field with its `"name": ` as printed, after the separator from
// the field before it.
type labelledField struct {
	f     flagField
	label string
}

// appendFields prints the flag's fields around "filters": head ends with `"filters": `,
// tail starts after the filters value.
func (s *streamer) appendFields(head, tail []byte, f *FlagRow) ([]byte, []byte) {
	head = append(head, '{')
	dst := &head
	if s.fields == nil {
		for i, fld := range s.c.flagFields() {
			sep := ", "
			if i == 0 {
				sep = ""
			}
			s.fields = append(s.fields, labelledField{fld, sep + `"` + flagFieldNames[fld] + `": `})
		}
	}
	for _, lf := range s.fields {
		b := append(*dst, lf.label...)
		switch lf.f {
		case fActive:
			b = strconv.AppendBool(b, f.Active)
		case fBucketingIdentifier:
			b = appendOptString(b, f.BucketingIdentifier)
		case fDeleted:
			b = append(b, "false"...)
		case fEnsureExperienceContinuity:
			b = appendOptBool(b, f.EnsureExperienceContinuity)
		case fEvaluationContexts, fEvaluationTags:
			b = append(b, '[')
			for i, t := range f.Tags {
				if i > 0 {
					b = append(b, ", "...)
				}
				b = pyjson.AppendString(b, t)
			}
			b = append(b, ']')
		case fEvaluationRuntime:
			b = appendOptString(b, f.EvaluationRuntime)
		case fFilters:
			*dst = b
			dst = &tail
			continue
		case fHasEncryptedPayloads:
			b = appendOptBool(b, f.HasEncryptedPayloads)
		case fHasExperiment:
			b = strconv.AppendBool(b, f.HasExperiment)
		case fID:
			b = strconv.AppendInt(b, f.ID, 10)
		case fKey:
			b = pyjson.AppendString(b, f.Key)
		case fName:
			b = pyjson.AppendString(b, f.Name)
		case fTeamID:
			b = strconv.AppendInt(b, f.TeamID, 10)
		case fVersion:
			b = appendOptInt(b, f.Version)
		}
		*dst = b
	}
	tail = append(tail, '}')
	return head, tail
}
