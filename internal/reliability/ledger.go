package reliability

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Ledger is the message oracle. Every test message is Text(from, to, seq):
// "zkr <run> <from> <to> <seq>" (plus optional padding), so any copy of it,
// wherever it is seen (a Kafka record, an IRC line), names who sent it to
// whom and in which order. Senders record what they were told (Sent);
// observers record what they saw (Saw, per source: "kafka", "irc", ...).
type Ledger struct {
	Run string

	mu       sync.Mutex
	sent     map[msgKey]error // the outcome the sender was told
	seen     map[string]map[msgKey]int
	order    map[string]map[pair][]int64 // per source and pair, seqs as seen
	foreign  map[string]int              // lines of this run that do not parse
	unsentOK map[string]int              // seen but never sent
}

type pair struct{ from, to string }

type msgKey struct {
	pair
	seq int64
}

var msgRE = regexp.MustCompile(`zkr ([0-9a-z]+) (\S+) (\S+) ([0-9]+)`)

// NewLedger starts a ledger for run (a short id: letters and digits).
func NewLedger(run string) *Ledger {
	return &Ledger{
		Run: run, sent: map[msgKey]error{}, seen: map[string]map[msgKey]int{},
		order: map[string]map[pair][]int64{}, foreign: map[string]int{}, unsentOK: map[string]int{},
	}
}

// Text is the message from sends to to with sequence number seq.
func (l *Ledger) Text(from, to string, seq int64) string {
	return fmt.Sprintf("zkr %s %s %s %d", l.Run, from, to, seq)
}

// Sent records what the sender was told about the message (nil: sent).
func (l *Ledger) Sent(from, to string, seq int64, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sent[msgKey{pair{from, to}, seq}] = err
}

// Saw records every ledger message of this run found in text, as seen by
// source (one text may hold several: a Kafka dump, an IRC line).
func (l *Ledger) Saw(source, text string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range msgRE.FindAllStringSubmatch(text, -1) {
		if m[1] != l.Run {
			continue
		}
		seq, err := strconv.ParseInt(m[4], 10, 64)
		if err != nil {
			l.foreign[source]++
			continue
		}
		k := msgKey{pair{m[2], m[3]}, seq}
		if l.seen[source] == nil {
			l.seen[source] = map[msgKey]int{}
			l.order[source] = map[pair][]int64{}
		}
		l.seen[source][k]++
		l.order[source][k.pair] = append(l.order[source][k.pair], seq)
	}
}

// Report is what one source saw against what senders were told.
type Report struct {
	Source string
	// Acked messages the sender was told were sent; Failed ones it was
	// told failed.
	Acked, Failed int
	// Delivered acked messages seen at least once.
	Delivered int
	// Lost acked messages not seen; Duplicated extra copies seen;
	// Reordered messages seen after a later one of the same pair (first
	// copies only); FailedSeen messages whose sender was told they failed
	// yet were seen; Unsent seen messages never sent at all.
	Lost, Duplicated, Reordered, FailedSeen, Unsent int
	// LostSample names a few lost messages.
	LostSample []string
}

func (r Report) String() string {
	return fmt.Sprintf("%s: acked %d, failed %d, delivered %d, lost %d, duplicated %d, reordered %d, failed-but-seen %d, never-sent %d",
		r.Source, r.Acked, r.Failed, r.Delivered, r.Lost, r.Duplicated, r.Reordered, r.FailedSeen, r.Unsent)
}

// Report compares source against the senders' outcomes. only, when not
// nil, limits it to the messages it accepts (e.g. one receiver's).
func (l *Ledger) Report(source string, only func(from, to string, seq int64) bool) Report {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := Report{Source: source}
	seen := l.seen[source]
	for k, err := range l.sent {
		if only != nil && !only(k.from, k.to, k.seq) {
			continue
		}
		n := seen[k]
		if err != nil {
			r.Failed++
			if n > 0 {
				r.FailedSeen++
			}
			continue
		}
		r.Acked++
		if n == 0 {
			r.Lost++
			if len(r.LostSample) < 5 {
				r.LostSample = append(r.LostSample, fmt.Sprintf("%s->%s #%d", k.from, k.to, k.seq))
			}
			continue
		}
		r.Delivered++
	}
	for k, n := range seen {
		if only != nil && !only(k.from, k.to, k.seq) {
			continue
		}
		if n > 1 {
			r.Duplicated += n - 1
		}
		if _, ok := l.sent[k]; !ok {
			r.Unsent++
		}
	}
	for p, seqs := range l.order[source] {
		got := map[int64]bool{}
		var max int64 = -1
		for _, s := range seqs {
			if only != nil && !only(p.from, p.to, s) {
				continue
			}
			if got[s] {
				continue
			}
			got[s] = true
			if s < max {
				r.Reordered++
			}
			if s > max {
				max = s
			}
		}
	}
	sort.Strings(r.LostSample)
	return r
}

// Check fails t when r shows a lost acked message, a failed one seen,
// a message never sent, or more than maxDup duplicates or maxReordered
// reorderings; it logs r either way.
func (r Report) Check(t testing.TB, maxDup, maxReordered int) {
	t.Helper()
	t.Log(r.String())
	var bad []string
	if r.Lost > 0 {
		bad = append(bad, fmt.Sprintf("%d acked messages lost (e.g. %s)", r.Lost, strings.Join(r.LostSample, ", ")))
	}
	if r.FailedSeen > 0 {
		bad = append(bad, fmt.Sprintf("%d messages whose sender was told they failed were delivered", r.FailedSeen))
	}
	if r.Unsent > 0 {
		bad = append(bad, fmt.Sprintf("%d messages seen that nobody sent", r.Unsent))
	}
	if r.Duplicated > maxDup {
		bad = append(bad, fmt.Sprintf("%d duplicates (allowed %d)", r.Duplicated, maxDup))
	}
	if r.Reordered > maxReordered {
		bad = append(bad, fmt.Sprintf("%d reordered (allowed %d)", r.Reordered, maxReordered))
	}
	if len(bad) > 0 {
		t.Errorf("%s: %s", r.Source, strings.Join(bad, "; "))
	}
}
