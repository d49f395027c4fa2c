package rebuild

import (
	"context"
	"io"
	"time"

	"github.com/flagwarden/flagwarden/internal/cachekeys"
	"github.com/flagwarden/flagwarden/internal/heapwatch"
)

// Rebuilder runs one team's build end to end: stream both payloads from the source
// into temporary keys, then make them live. It is what a rebuild job, the CLI and the
// benchmark call.
type Rebuilder struct {
	src     FlagSource
	builder *Builder
	pub     *Publisher
}

// NewRebuilder returns a rebuilder reading src and publishing through pub.
func NewRebuilder(src FlagSource, builder *Builder, pub *Publisher) *Rebuilder {
	return &Rebuilder{src: src, builder: builder, pub: pub}
}

// now is the publisher's clock: builds are stamped on the clock the caches are judged by.
func (r *Rebuilder) now() time.Time { return r.pub.opts.Clock.Now().UTC() }

// Rebuild builds and publishes both caches of team. On any error nothing live changes
// and the temporary keys are removed. The result is filled in either way.
func (r *Rebuilder) Rebuild(ctx context.Context, team int64) (res BuildResult, err error) {
	res = BuildResult{TeamID: team, StartedAt: r.now()}
	heap := heapwatch.Start(5 * time.Millisecond)
	// Named results: the deferred finish time and peaks reach the caller.
	defer func() {
		p := heap.Stop()
		res.PeakHeapBytes, res.PeakLiveHeapBytes = p.Heap, p.Live
		res.FinishedAt = r.now()
	}()
	sink := &streamSink{ctx: ctx, pub: r.pub, team: team}
	st, err := r.builder.Build(ctx, r.src, team, sink)
	res.Flags, res.Cohorts, res.SkippedFlags = st.Flags, st.Cohorts, st.Skipped
	res.FirstPassSeconds = st.FirstPass.Seconds()
	res.PredictionReused, res.Attempts, res.PredictionSource = st.PredictionReused, st.Attempts, st.PredictionSource
	res.SharedPredictionLoad, res.SharedPredictionSave, res.SharedPredictionError = st.SharedLoad, st.SharedSave, st.SharedError
	res.Problems, res.Skipped, res.SkippedByReason = st.Problems, st.SkippedFlags, st.SkippedByReason
	flags, defs := sink.flags, sink.defs
	if err != nil {
		sink.abort()
		res.Error = err.Error()
		return res, err
	}
	meta := cachekeys.Meta{BuiltAt: r.now(), Flags: st.Flags, Cohorts: st.Cohorts, SourceWatermark: st.Team.Watermark}
	pf, err := flags.Commit(meta)
	if err != nil {
		defs.Abort()
		res.Error = err.Error()
		return res, err
	}
	pd, err := defs.Commit(meta)
	if err != nil {
		res.Error = err.Error()
		return res, err
	}
	res.OK = true
	res.Unchanged = pf.Unchanged && pd.Unchanged
	res.FlagsBytes, res.DefinitionsBytes = pf.Meta.Bytes, pd.Meta.Bytes
	res.FlagsStoredBytes, res.DefinitionsStoredBytes = pf.Meta.StoredBytes, pd.Meta.StoredBytes
	res.FlagsETag, res.DefinitionsETag = pf.Meta.ETag, pd.Meta.ETag
	return res, nil
}

// streamSink opens the publisher's streams for each build attempt; a restart aborts
// the previous attempt's streams, so nothing of it is ever live.
type streamSink struct {
	ctx         context.Context
	pub         *Publisher
	team        int64
	flags, defs *Stream
}

func (s *streamSink) Writers(int) (io.Writer, io.Writer, error) {
	s.abort()
	s.flags = s.pub.Begin(s.ctx, s.team, cachekeys.KindFlags)
	s.defs = s.pub.Begin(s.ctx, s.team, cachekeys.KindDefinitions)
	return s.flags, s.defs, nil
}

func (s *streamSink) abort() {
	if s.flags != nil {
		s.flags.Abort()
		s.defs.Abort()
	}
}
