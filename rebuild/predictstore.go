package rebuild

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flagwarden/flagwarden/internal/cachekeys"
)

// A builder's own predictions help only the builds it runs itself. A deployment's
// builds of one team land on any replica (River hands a job to whichever is free), and
// a restarted process has none, so on its own a builder would mostly run the full first
// pass. A PredictionStore shares the last exact index of each team between builders:
// a builder that has no prediction of its own loads the shared one, and every
// successful build stores its exact index there.

// PredictionStore holds shared predictions, the encoded form encodePrediction writes.
type PredictionStore interface {
	// LoadPrediction returns the stored prediction of team under contract, nil when
	// there is none.
	LoadPrediction(ctx context.Context, team int64, c Contract) ([]byte, error)
	// SavePrediction stores b as team's prediction under contract.
	SavePrediction(ctx context.Context, team int64, c Contract, b []byte) error
	// KeepPrediction extends the life of the stored prediction and reports whether
	// there was one.
	KeepPrediction(ctx context.Context, team int64, c Contract) (bool, error)
	// ForgetPrediction removes it.
	ForgetPrediction(ctx context.Context, team int64, c Contract) error
}

// MaxSharedPredictionBytes bounds one shared prediction: a team of a million flags
// with tens of thousands of dependencies needs a few hundred KiB. A larger index is not
// shared (its builder still keeps it, budget permitting), and a larger stored value is
// not read.
const MaxSharedPredictionBytes = 8 << 20

// ErrPredictionTooLarge is what a store returns for a prediction over
// MaxSharedPredictionBytes.
var ErrPredictionTooLarge = errors.New("shared prediction larger than " + strconv.Itoa(MaxSharedPredictionBytes>>20) + " MiB")

// sharedTimeout bounds one store operation: a slow store must not hold a build up, and
// a build without a shared prediction is only slower.
const sharedTimeout = 2 * time.Second

// RedisPredictions keeps shared predictions in Redis, next to the caches, each for ttl
// after the last build that stored or confirmed it.
type RedisPredictions struct {
	rdb    redis.UniversalClient
	layout cachekeys.Layout
	ttl    time.Duration
}

// NewRedisPredictions returns a store of shared predictions under layout's keys.
func NewRedisPredictions(rdb redis.UniversalClient, layout cachekeys.Layout, ttl time.Duration) *RedisPredictions {
	return &RedisPredictions{rdb: rdb, layout: layout, ttl: ttl}
}

func (s *RedisPredictions) key(team int64, c Contract) string {
	return s.layout.Prediction(team, string(c), predictionVersion)
}

// LoadPrediction reads at most one byte more than MaxSharedPredictionBytes, so an
// oversized value is refused without being read whole.
func (s *RedisPredictions) LoadPrediction(ctx context.Context, team int64, c Contract) ([]byte, error) {
	b, err := s.rdb.GetRange(ctx, s.key(team, c), 0, MaxSharedPredictionBytes).Bytes()
	switch {
	case err != nil:
		return nil, fmt.Errorf("load shared prediction of team %d: %w", team, err)
	case len(b) == 0: // GETRANGE reads a missing key as empty; an empty value is no prediction either
		return nil, nil
	case len(b) > MaxSharedPredictionBytes:
		return nil, fmt.Errorf("load shared prediction of team %d: %w", team, ErrPredictionTooLarge)
	}
	return b, nil
}

// SavePrediction removes the stored prediction when b is too large to share, so that
// an older one does not linger.
func (s *RedisPredictions) SavePrediction(ctx context.Context, team int64, c Contract, b []byte) error {
	if len(b) > MaxSharedPredictionBytes {
		if err := s.ForgetPrediction(ctx, team, c); err != nil {
			return err
		}
		return fmt.Errorf("save shared prediction of team %d: %w", team, ErrPredictionTooLarge)
	}
	if err := s.rdb.Set(ctx, s.key(team, c), b, s.ttl).Err(); err != nil {
		return fmt.Errorf("save shared prediction of team %d: %w", team, err)
	}
	return nil
}

func (s *RedisPredictions) KeepPrediction(ctx context.Context, team int64, c Contract) (bool, error) {
	ok, err := s.rdb.Expire(ctx, s.key(team, c), s.ttl).Result()
	if err != nil {
		return false, fmt.Errorf("keep shared prediction of team %d: %w", team, err)
	}
	return ok, nil
}

func (s *RedisPredictions) ForgetPrediction(ctx context.Context, team int64, c Contract) error {
	if err := s.rdb.Del(ctx, s.key(team, c)).Err(); err != nil {
		return fmt.Errorf("forget shared prediction of team %d: %w", team, err)
	}
	return nil
}

// What a build did with the shared store (BuildStats.SharedLoad and SharedSave).
const (
	// SharedLoaded: the build predicted from the shared prediction; SharedAbsent: there
	// was none; SharedInvalid: it was malformed or too large (the build ran the full
	// first pass); SharedFailed: the store failed.
	SharedLoaded  = "loaded"
	SharedAbsent  = "absent"
	SharedInvalid = "invalid"
	SharedFailed  = "error"
	// SharedSaved: the build stored its exact index; SharedKept: the stored one was
	// already it (its life was extended); SharedTooLarge: the index is too large to
	// share.
	SharedSaved    = "saved"
	SharedKept     = "kept"
	SharedTooLarge = "too_large"
)

// Where a build's first prediction came from (BuildStats.PredictionSource).
const (
	PredictionReferences    = "references"     // the full first pass
	PredictionPreviousBuild = "previous_build" // this builder's last build of the team
	PredictionShared        = "shared"         // the shared store
)

// loadShared is the shared prediction of the team, or nil, with what the store did.
func (b *Builder) loadShared(ctx context.Context, k predictionKey, st *BuildStats) *lastBuild {
	ctx, cancel := context.WithTimeout(ctx, sharedTimeout)
	defer cancel()
	raw, err := b.opts.Predictions.LoadPrediction(ctx, k.team, k.contract)
	switch {
	case errors.Is(err, ErrPredictionTooLarge):
		st.SharedLoad, st.SharedError = SharedInvalid, err.Error()
		return nil
	case err != nil:
		st.SharedLoad, st.SharedError = SharedFailed, err.Error()
		return nil
	case raw == nil:
		st.SharedLoad = SharedAbsent
		return nil
	}
	lb, err := decodePrediction(raw, k.team, k.contract)
	if err != nil {
		st.SharedLoad, st.SharedError = SharedInvalid, fmt.Sprintf("team %d: %v", k.team, err)
		return nil
	}
	st.SharedLoad = SharedLoaded
	return &lb
}

// writesShared: the builder stores its indexes in a shared store.
func (b *Builder) writesShared() bool {
	return b.opts.Predictions != nil && !b.opts.LoadPredictionsOnly
}

// saveShared stores the build's exact index, or only extends the stored one's life
// when the build found what its prediction said and nothing changed since.
func (b *Builder) saveShared(ctx context.Context, k predictionKey, lb lastBuild, unchanged bool, st *BuildStats) {
	if !b.writesShared() {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sharedTimeout)
	defer cancel()
	s := b.opts.Predictions
	if unchanged {
		kept, err := s.KeepPrediction(ctx, k.team, k.contract)
		if err != nil {
			st.SharedSave, st.SharedError = SharedFailed, err.Error()
			return
		}
		if kept {
			st.SharedSave = SharedKept
			return
		}
	}
	var err error
	if lb.index.size() > maxDecodedPrediction { // no reader would take it
		err = s.ForgetPrediction(ctx, k.team, k.contract)
		err = cmp.Or(err, ErrPredictionTooLarge)
	} else {
		err = s.SavePrediction(ctx, k.team, k.contract, encodePrediction(k.team, k.contract, lb))
	}
	switch {
	case errors.Is(err, ErrPredictionTooLarge):
		st.SharedSave = SharedTooLarge
	case err != nil:
		st.SharedSave, st.SharedError = SharedFailed, err.Error()
	default:
		st.SharedSave = SharedSaved
	}
}

// forgetShared removes the team's shared prediction after a build that did not settle.
func (b *Builder) forgetShared(ctx context.Context, k predictionKey, st *BuildStats) {
	if !b.writesShared() {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sharedTimeout)
	defer cancel()
	if err := b.opts.Predictions.ForgetPrediction(ctx, k.team, k.contract); err != nil {
		st.SharedSave, st.SharedError = SharedFailed, err.Error()
	}
}
