package reliability

import (
	"fmt"
	"regexp"
	"sort"
	"testing"
	"time"
)

// Term is one interval in which a manager said it led.
type Term struct {
	Manager    string
	Start, End time.Time // End is zero when the log ends while leading
}

// slog's text handler: time=2026-11-25T14:00:00.123Z level=INFO msg="became leader" ...
var termRE = regexp.MustCompile(`(?m)^time=(\S+) level=\S+ msg="(became leader|stopped being leader)"`)

// Terms reads the leadership terms from one manager's log (slog text
// format, as zkchat writes with --log-format text).
func Terms(manager, log string) ([]Term, error) {
	var terms []Term
	var cur *Term
	for _, m := range termRE.FindAllStringSubmatch(log, -1) {
		ts, err := time.Parse(time.RFC3339Nano, m[1])
		if err != nil {
			return nil, fmt.Errorf("%s: bad time %q", manager, m[1])
		}
		switch m[2] {
		case "became leader":
			if cur != nil {
				return nil, fmt.Errorf("%s: became leader twice without stopping (%v, %v)", manager, cur.Start, ts)
			}
			cur = &Term{Manager: manager, Start: ts}
		case "stopped being leader":
			if cur != nil {
				cur.End = ts
				terms = append(terms, *cur)
				cur = nil
			}
		}
	}
	if cur != nil {
		terms = append(terms, *cur)
	}
	return terms, nil
}

// NoOverlap fails t when two managers' terms overlap. A term that is still
// open ends at cut[manager] when given (e.g. the moment the test froze or
// killed that manager: a frozen or dead process writes nothing), else at
// the end of time.
func NoOverlap(t testing.TB, terms []Term, cut map[string]time.Time) {
	t.Helper()
	ts := append([]Term(nil), terms...)
	for i := range ts {
		if c, ok := cut[ts[i].Manager]; ok && (ts[i].End.IsZero() || c.Before(ts[i].End)) && c.After(ts[i].Start) {
			ts[i].End = c
		}
		if ts[i].End.IsZero() {
			ts[i].End = time.Unix(1<<40, 0)
		}
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].Start.Before(ts[j].Start) })
	for i := 1; i < len(ts); i++ {
		if ts[i].Start.Before(ts[i-1].End) && ts[i].Manager != ts[i-1].Manager {
			t.Errorf("leadership overlaps: %s led %v..%v, %s from %v", ts[i-1].Manager, ts[i-1].Start, ts[i-1].End, ts[i].Manager, ts[i].Start)
		}
	}
	t.Logf("leadership terms: %d, no overlap checked", len(ts))
}

// Leading returns the one of ps whose log says it leads now (its last term
// is open), or nil when none or more than one does.
func Leading(t testing.TB, ps ...*Proc) *Proc {
	t.Helper()
	var lead *Proc
	for _, p := range ps {
		terms, err := Terms(p.Name, p.Log())
		if err != nil {
			t.Fatal(err)
		}
		if n := len(terms); n > 0 && terms[n-1].End.IsZero() {
			if lead != nil {
				return nil
			}
			lead = p
		}
	}
	return lead
}

// ByRole waits up to d for a leader among m1 and m2, the two managers of a
// row, and returns the leader first. A fault can swap their roles; a
// leader runs more goroutines than a follower (a watch per request
// directory, the request handlers), so health is compared by role.
func ByRole(t testing.TB, m1, m2 *Proc, d time.Duration) (leader, follower *Proc) {
	t.Helper()
	var lead *Proc
	WaitFor(t, d, "one leading manager", func() bool { lead = Leading(t, m1, m2); return lead != nil })
	if lead == m2 {
		return m2, m1
	}
	return m1, m2
}
