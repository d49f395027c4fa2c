package web

import (
	"github.com/flagwarden/flagwarden/detectors"
	"github.com/flagwarden/flagwarden/internal/series"
)

// The queue trend drawn on the dashboard is the detectors' fit (detectors.FitTrend) of the
// chart's window. The judgment shown beside it (verdict, ETA) is not recomputed here: it
// is the backlog detector's from its last pass (queueGrowth), the one that pages.

// Trend is a queue's fitted trend as the API returns it.
type Trend = detectors.Trend

// maxTrendPoints bounds the points a fit sees.
const maxTrendPoints = detectors.MaxTrendPoints

func fitTrend(points []series.Point, limit float64) *Trend { return detectors.FitTrend(points, limit) }

func thin(points []series.Point, n int) []series.Point { return detectors.Thin(points, n) }
