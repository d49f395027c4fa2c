// Package verify compares the flag caches that are published, in Redis and in
// PostHog's S3 tier, with a fresh build from the flag database, team by team, whoever
// wrote them (Django's HyperCache or flagwarden). It never holds a payload: the stored
// value streams through GETRANGE chunks and the HyperCache decoder into a hash, and the
// fresh build's JSON is hashed as the builder writes it.
//
// Each team, kind and tier gets one outcome: ok, missing, undecodable (not what
// PostHog's readers accept), stale (other bytes, written before the team's data last
// changed), different (other bytes, not older than the data) or recent (the data
// changed within the grace period; not judged yet). Redis entries in the PostHog
// layout also get their :etag and expiry-tracking checked.
package verify

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flagwarden/flagwarden/internal/cachekeys"
	"github.com/flagwarden/flagwarden/internal/verdict"
	"github.com/flagwarden/flagwarden/rebuild"
	"github.com/flagwarden/flagwarden/rebuild/s3tier"
)

// The verdict vocabulary lives in internal/verdict, which the detectors read without
// depending on the verifier; these names keep verify's own API whole.
type (
	// Outcome is what one stored entry turned out to be.
	Outcome = verdict.Outcome
	// Check is the verdict on one stored entry.
	Check = verdict.Check
)

// Outcomes of one team, kind and tier (see verdict).
const (
	OK          = verdict.OK
	Missing     = verdict.Missing
	Undecodable = verdict.Undecodable
	Stale       = verdict.Stale
	Different   = verdict.Different
	Recent      = verdict.Recent
	Failed      = verdict.Failed
)

// Outcomes lists every outcome in report order.
var Outcomes = verdict.Outcomes

// Side checks of an entry: its :etag and its place in PostHog's expiry sorted set.
const (
	CheckOK          = verdict.CheckOK
	CheckMissing     = verdict.CheckMissing
	CheckWrong       = verdict.CheckWrong
	CheckUndecodable = verdict.CheckUndecodable
)

// Tiers.
const (
	TierRedis = verdict.TierRedis
	TierS3    = verdict.TierS3
)

// ObjectReader reads the S3 tier (s3tier.Tier).
type ObjectReader interface {
	Open(ctx context.Context, team int64, kind cachekeys.Kind) (*s3tier.Object, error)
}

// Options configure a Verifier.
type Options struct {
	// Source is the flag database the fresh build reads.
	Source rebuild.FlagSource
	// Builder configures the fresh build as the rebuild engine's is configured.
	Builder rebuild.BuilderOptions
	// Redis holds the caches; Layout names their keys.
	Redis  redis.UniversalClient
	Layout cachekeys.Layout
	// S3, if set, is checked too.
	S3 ObjectReader
	// TTL is the expiry PostHog sets on its entries: an entry's write time is its
	// expiry-set score minus TTL.
	TTL time.Duration
	// Grace leaves teams whose data changed this recently unjudged.
	Grace time.Duration
	// ChunkBytes is one GETRANGE's size. Default 1 MiB.
	ChunkBytes int64
	// Now is the clock the grace period is judged by. Default time.Now.
	Now func() time.Time
}

// Verifier checks teams.
type Verifier struct {
	opts    Options
	builder *rebuild.Builder
}

// New returns a verifier.
func New(opts Options) (*Verifier, error) {
	if opts.Source == nil || opts.Redis == nil {
		return nil, errors.New("verify: Source and Redis are required")
	}
	opts.ChunkBytes = cmp.Or(opts.ChunkBytes, 1<<20)
	opts.TTL = cmp.Or(opts.TTL, 7*24*time.Hour)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	b := opts.Builder
	b.Progress = nil
	return &Verifier{opts: opts, builder: rebuild.NewBuilder(b)}, nil
}

// SetClock sets the clock the grace period is judged by (the demo's simulated one).
func (v *Verifier) SetClock(now func() time.Time) {
	if now != nil {
		v.opts.Now = now
	}
}

// Tiers lists the tiers this verifier checks.
func (v *Verifier) Tiers() []string {
	if v.opts.S3 != nil {
		return []string{TierRedis, TierS3}
	}
	return []string{TierRedis}
}

// digest is a fresh or stored payload's identity.
type digest struct {
	bytes int64
	sha   string
}

// hasher hashes what is written to it.
type hasher struct {
	h hash.Hash
	n int64
}

func newHasher() *hasher { return &hasher{h: sha256.New()} }

func (w *hasher) Write(b []byte) (int, error) {
	w.h.Write(b)
	w.n += int64(len(b))
	return len(b), nil
}

func (w *hasher) digest() digest { return digest{bytes: w.n, sha: hex.EncodeToString(w.h.Sum(nil))} }

// hashSink hashes both payloads of a build; a restarted build hashes them afresh.
type hashSink struct{ flags, definitions *hasher }

func (s *hashSink) Writers(int) (io.Writer, io.Writer, error) {
	s.flags, s.definitions = newHasher(), newHasher()
	return s.flags, s.definitions, nil
}

// Team checks both kinds of one team in every tier. A team that does not exist is an
// error wrapping rebuild.ErrUnknownTeam; every other failure becomes a Failed check.
func (v *Verifier) Team(ctx context.Context, team int64) ([]Check, error) {
	var sink hashSink
	st, err := v.builder.Build(ctx, v.opts.Source, team, &sink)
	if errors.Is(err, rebuild.ErrUnknownTeam) {
		return nil, err
	}
	var out []Check
	if err != nil {
		for _, kind := range cachekeys.Kinds {
			for _, tier := range v.Tiers() {
				out = append(out, Check{TeamID: team, Kind: kind, Tier: tier, Outcome: Failed,
					Detail: fmt.Sprintf("fresh build failed: %v", err)})
			}
		}
		return out, nil
	}
	fresh := map[cachekeys.Kind]digest{cachekeys.KindFlags: sink.flags.digest(), cachekeys.KindDefinitions: sink.definitions.digest()}
	changed := st.Team.Watermark
	recent := v.opts.Grace > 0 && !changed.IsZero() && v.opts.Now().Sub(changed) < v.opts.Grace
	for _, kind := range cachekeys.Kinds {
		f := fresh[kind]
		base := Check{TeamID: team, Kind: kind, FreshBytes: f.bytes, FreshSHA256: f.sha, DataChangedAt: changed}
		c := base
		c.Tier = TierRedis
		v.checkRedis(ctx, &c, f)
		out = append(out, judgeRecent(c, recent))
		if v.opts.S3 != nil {
			c := base
			c.Tier = TierS3
			v.checkS3(ctx, &c, f)
			out = append(out, judgeRecent(c, recent))
		}
	}
	if slices.ContainsFunc(out, func(c Check) bool { return c.Outcome == Stale || c.Outcome == Different }) {
		// The data may have changed between the build and the reads: then the entries
		// are newer than the build, and judging them would be judging the build.
		if now, err := v.opts.Source.Team(ctx, team); err == nil && now.Watermark.After(changed) {
			for i := range out {
				out[i].DataChangedAt = now.Watermark
				out[i] = judgeRecent(out[i], true)
			}
		}
	}
	return out, nil
}

// judgeRecent turns a mismatch of a team whose data just changed into Recent: its
// rebuild may still be running. A broken entry is broken whatever the data did.
func judgeRecent(c Check, recent bool) Check {
	if recent && (c.Outcome == Stale || c.Outcome == Different || c.Outcome == Missing) {
		c.Detail = fmt.Sprintf("data changed at %s, within the grace period (was %s: %s)",
			c.DataChangedAt.Format(time.RFC3339), c.Outcome, c.Detail)
		c.Outcome = Recent
	}
	return c
}

// judgeAge decides between stale and different for an entry whose bytes differ. asOf
// is the newest data change the entry can reflect (the build's watermark, or its write
// time), known to within margin (a second for the expiry set and S3, whose times are
// whole seconds).
func judgeAge(c *Check, asOf time.Time, margin time.Duration) {
	switch {
	case asOf.IsZero():
		c.Outcome = Different
		c.Detail = "other bytes than a fresh build; when it was written is unknown"
	case !c.DataChangedAt.IsZero() && asOf.Add(margin).Before(c.DataChangedAt):
		c.Outcome = Stale
		c.Detail = fmt.Sprintf("written %s, before the team's data changed at %s",
			c.WrittenAt.Format(time.RFC3339), c.DataChangedAt.Format(time.RFC3339))
	default:
		c.Outcome = Different
		c.Detail = fmt.Sprintf("written %s, not before the data's last change, yet with other bytes than a fresh build",
			c.WrittenAt.Format(time.RFC3339))
	}
}
