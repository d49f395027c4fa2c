package web

import (
	"github.com/flagwarden/flagwarden/detectors"
	"github.com/flagwarden/flagwarden/internal/series"
)

// The queue trend and its ETAs are the detectors' fit (detectors.FitTrend), so that
// the dashboard and the pages judge a queue with one piece of code.

// Trend is a queue's fitted trend as the API returns it.
type Trend = detectors.Trend

// maxTrendPoints bounds the points a fit sees.
const maxTrendPoints = detectors.MaxTrendPoints

func fitTrend(points []series.Point, limit float64) *Trend { return detectors.FitTrend(points, limit) }

func thin(points []series.Point, n int) []series.Point { return detectors.Thin(points, n) }
