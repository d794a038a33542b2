package testenv

import (
	"math"
	"slices"
	"testing"
	"time"
)

// Percentile is the nearest-rank percentile p (0–100) of sorted; 0 for none.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// MS is d in milliseconds.
func MS(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// ReportLatency reports p50, p99 and max of ds as <prefix>p50-ms,
// <prefix>p99-ms and <prefix>max-ms (nothing for no samples).
func ReportLatency(b *testing.B, prefix string, ds []time.Duration) {
	b.Helper()
	if len(ds) == 0 {
		return
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	b.ReportMetric(MS(Percentile(s, 50)), prefix+"p50-ms")
	b.ReportMetric(MS(Percentile(s, 99)), prefix+"p99-ms")
	b.ReportMetric(MS(s[len(s)-1]), prefix+"max-ms")
}

// ReportRate reports n operations over the benchmark's timed duration as
// unit (e.g. "msgs/s").
func ReportRate(b *testing.B, unit string, n int) {
	b.Helper()
	if el := b.Elapsed(); el > 0 {
		b.ReportMetric(float64(n)/el.Seconds(), unit)
	}
}
