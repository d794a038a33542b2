package reliability

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkchat/zkchat/client"
	"github.com/zkchat/zkchat/protocol"
)

// StartZkchat runs the zkchat binary as name with the suite's global flags,
// then globals (more global flags, e.g. "--session-timeout", "4s"), then
// args (the command and its flags).
func (s *Suite) StartZkchat(name string, globals []string, args ...string) *Proc {
	all := append(append(s.commonArgs(), globals...), args...)
	return StartProc(s.T, name, nil, all...)
}

// ManagerWith is Manager with extra global flags (before the command).
func (s *Suite) ManagerWith(name string, globals []string, extra ...string) *Proc {
	args := append([]string{"manager", "--name", name, "--replication-factor", "3", "--debug-addr=auto"}, extra...)
	return s.StartZkchat(name, globals, args...)
}

// BridgeWith is Bridge with extra global flags (before the command).
func (s *Suite) BridgeWith(name, server, nick, channel string, globals []string, extra ...string) *Proc {
	args := append([]string{"bridge", "--irc-server", server, "--nick", nick, "--channel", channel,
		"--name", name, "--replication-factor", "3", "--rate", "-1", "--debug-addr=auto"}, extra...)
	return s.StartZkchat(name, globals, args...)
}

// Attempt is one register or quit request a Requests loop made.
type Attempt struct {
	Key        string // "enroll/<id>" or "quit/<id>"
	Start, End time.Time
	Status     protocol.Status
	Err        error
}

// Requests plays users that register (and every second one quits again)
// in a loop, as real clients do: an attempt that fails on the connection is
// retried (the protocol makes a retry safe); one the manager never answers
// within the worker's RequestTimeout is a lost request.
type Requests struct {
	s      *Suite
	prefix string
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	attempts []Attempt
	lost     []string // requests never answered (timeouts)
	gaveUp   []string // requests that failed every retry
	n        int
}

// StartRequests starts loops goroutines making requests for ids prefix0,
// prefix1, ... until Stop.
func (s *Suite) StartRequests(prefix string, loops int) *Requests {
	ctx, cancel := context.WithCancel(context.Background())
	r := &Requests{s: s, prefix: prefix, cancel: cancel}
	for i := 0; i < loops; i++ {
		r.wg.Add(1)
		go r.loop(ctx)
	}
	s.T.Cleanup(r.Stop)
	return r
}

// Stop ends the loops and waits for the requests in flight.
func (r *Requests) Stop() {
	r.cancel()
	r.wg.Wait()
}

func (r *Requests) next() (string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := r.n
	r.n++
	return fmt.Sprintf("%s%d", r.prefix, i), i
}

func (r *Requests) loop(ctx context.Context) {
	defer r.wg.Done()
	for ctx.Err() == nil {
		id, i := r.next()
		w, err := client.New(id, client.Config{
			ZooKeeper: r.s.Env.ZooKeeper, RequestTimeout: 60 * time.Second,
			SessionTimeout: 6 * time.Second, Logger: quietLogger(r.s.T).With("requester", id),
		})
		if err != nil {
			r.s.T.Errorf("requester %s: %v", id, err)
			return
		}
		// Once begun, a user's requests run to their end (not cut by Stop).
		if r.do("enroll/"+id, w.Register) && i%2 == 1 {
			r.do("quit/"+id, w.Quit)
		}
		w.Close()
	}
}

// do makes one request, retrying connection failures up to 5 times.
// It reports whether the request succeeded.
func (r *Requests) do(key string, f func(context.Context) (protocol.Status, error)) bool {
	for try := 0; try < 5; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		a := Attempt{Key: key, Start: time.Now()}
		a.Status, a.Err = f(ctx)
		cancel()
		a.End = time.Now()
		r.mu.Lock()
		r.attempts = append(r.attempts, a)
		switch {
		case a.Err == nil:
			r.mu.Unlock()
			return true
		case errors.Is(a.Err, protocol.ErrManagerTimeout):
			r.lost = append(r.lost, key)
			r.mu.Unlock()
			return false
		}
		r.mu.Unlock()
		time.Sleep(200 * time.Millisecond)
	}
	r.mu.Lock()
	r.gaveUp = append(r.gaveUp, key)
	r.mu.Unlock()
	return false
}

// Attempts is a copy of every attempt so far.
func (r *Requests) Attempts() []Attempt {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Attempt(nil), r.attempts...)
}

// Recovery is the time from at until the first successful attempt that
// started at or after at ended (-1 when none).
func (r *Requests) Recovery(at time.Time) time.Duration {
	best := time.Duration(-1)
	for _, a := range r.Attempts() {
		if a.Err == nil && !a.Start.Before(at) && (best < 0 || a.End.Sub(at) < best) {
			best = a.End.Sub(at)
		}
	}
	return best
}

// MaxLatency is the longest successful attempt that ended in [from, to].
func (r *Requests) MaxLatency(from, to time.Time) time.Duration {
	var m time.Duration
	for _, a := range r.Attempts() {
		if a.Err == nil && !a.End.Before(from) && !a.End.After(to) && a.End.Sub(a.Start) > m {
			m = a.End.Sub(a.Start)
		}
	}
	return m
}

// RequestReport is the outcome of a Requests run against the managers'
// logs and the registry.
type RequestReport struct {
	Requests, Attempts, Retried int // logical requests, attempts, attempts that failed and were retried
	Lost, GaveUp                int // never answered / failed every retry
	AnsweredTwice, NotAnswered  int // by the managers' logs
	// Unsure: succeeded, and the only manager line about it says the
	// answering write's outcome was unknown (the connection broke with it
	// in flight, and ZooKeeper had applied it).
	Unsure        int
	RegistryWrong int // ids whose registry node is not as the requests left it
}

func (q RequestReport) String() string {
	return fmt.Sprintf("requests %d (attempts %d, retried %d): lost %d, gave up %d, answered more often than asked %d, succeeded but not logged %d, succeeded with the answer logged as outcome unknown %d, registry wrong %d",
		q.Requests, q.Attempts, q.Retried, q.Lost, q.GaveUp, q.AnsweredTwice, q.NotAnswered, q.Unsure, q.RegistryWrong)
}

var (
	answeredRE = regexp.MustCompile(`(?m)^time=\S+ level=\S+ msg="request answered" .*?\bkind=(\S+) id=(\S+)`)
	unsureRE   = regexp.MustCompile(`(?m)^time=\S+ level=\S+ msg="request answer outcome unknown" .*?\bkind=(\S+) id=(\S+)`)
)

// Answered counts the "request answered" lines per "kind/id" in logs.
func Answered(logs ...string) map[string]int { return countLines(answeredRE, logs) }

func countLines(re *regexp.Regexp, logs []string) map[string]int {
	n := map[string]int{}
	for _, l := range logs {
		for _, m := range re.FindAllStringSubmatch(l, -1) {
			n[m[1]+"/"+m[2]]++
		}
	}
	return n
}

// Check compares the requests with the managers' logs (every request
// answered at least once and at most once per attempt the requester made:
// exactly once when it made one) and with /registry (an id is registered
// exactly when its last successful request was a register). It fails t on
// any violation and returns the counts.
func (r *Requests) Check(t testing.TB, registry []string, logs ...string) RequestReport {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var q RequestReport
	per := map[string]int{}
	succeeded := map[string]bool{}
	for _, a := range r.attempts {
		per[a.Key]++
		if a.Err == nil {
			succeeded[a.Key] = true
		} else if !errors.Is(a.Err, protocol.ErrManagerTimeout) {
			q.Retried++
		}
	}
	q.Requests, q.Attempts = len(per), len(r.attempts)
	q.Lost, q.GaveUp = len(r.lost), len(r.gaveUp)
	ans, unsure := Answered(logs...), countLines(unsureRE, logs)
	var bad []string
	keys := make([]string, 0, len(per))
	for k := range per {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		switch n := ans[k]; {
		case n > per[k]:
			q.AnsweredTwice++
			bad = append(bad, fmt.Sprintf("%s answered %d times for %d attempts", k, n, per[k]))
		case n == 0 && succeeded[k] && unsure[k] > 0:
			q.Unsure++
			t.Logf("%s succeeded; its answer was logged as outcome unknown (the write was applied)", k)
		case n == 0 && succeeded[k]:
			q.NotAnswered++
			bad = append(bad, fmt.Sprintf("%s succeeded but no manager logged an answer", k))
		}
	}
	reg := map[string]bool{}
	for _, id := range registry {
		reg[id] = true
	}
	undecided := map[string]bool{}
	for _, k := range append(append([]string{}, r.lost...), r.gaveUp...) {
		undecided[k] = true
	}
	for i := 0; i < r.n; i++ {
		id := fmt.Sprintf("%s%d", r.prefix, i)
		if per["enroll/"+id] == 0 || undecided["enroll/"+id] || undecided["quit/"+id] {
			continue // never started, or no definite outcome to check
		}
		if want := succeeded["enroll/"+id] && !succeeded["quit/"+id]; want != reg[id] {
			q.RegistryWrong++
			bad = append(bad, fmt.Sprintf("%s registered=%v, want %v", id, reg[id], want))
		}
	}
	if q.Lost > 0 {
		bad = append(bad, fmt.Sprintf("%d requests never answered: %v", q.Lost, r.lost))
	}
	if q.GaveUp > 0 {
		bad = append(bad, fmt.Sprintf("%d requests failed 5 attempts: %v", q.GaveUp, r.gaveUp))
	}
	t.Log(q.String())
	if len(bad) > 10 {
		bad = append(bad[:10], fmt.Sprintf("... and %d more", len(bad)-10))
	}
	for _, b := range bad {
		t.Error(b)
	}
	return q
}

// Sender sends ledger messages from each worker to the next in turn until
// stopped; each send has its own deadline, and its outcome goes to the
// ledger.
type Sender struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	ok, bad int
}

// StartSending starts one goroutine per worker sending to the receivers in
// to in turn (never to itself), with sequence numbers from first up, every
// pause.
func (s *Suite) StartSending(ws []*client.Worker, to []string, first int64, pause time.Duration) *Sender {
	ctx, cancel := context.WithCancel(context.Background())
	snd := &Sender{cancel: cancel}
	for i, w := range ws {
		snd.wg.Add(1)
		go func(w *client.Worker, i int) {
			defer snd.wg.Done()
			for seq := first; ctx.Err() == nil; seq++ {
				dst := to[(i+int(seq))%len(to)]
				if dst == w.ID() {
					dst = to[(i+int(seq)+1)%len(to)]
				}
				sctx, c := context.WithTimeout(context.Background(), 45*time.Second)
				err := s.Send(sctx, w, dst, seq)
				c()
				snd.mu.Lock()
				if err == nil {
					snd.ok++
				} else {
					snd.bad++
				}
				snd.mu.Unlock()
				if err != nil {
					time.Sleep(100 * time.Millisecond)
				}
				select {
				case <-time.After(pause):
				case <-ctx.Done():
				}
			}
		}(w, i)
	}
	s.T.Cleanup(snd.Stop)
	return snd
}

// Stop ends the senders and waits for the sends in flight.
func (snd *Sender) Stop() {
	snd.cancel()
	snd.wg.Wait()
}

// Counts is how many sends were acknowledged and how many failed.
func (snd *Sender) Counts() (ok, failed int) {
	snd.mu.Lock()
	defer snd.mu.Unlock()
	return snd.ok, snd.bad
}

// Registry lists /registry of the suite's chroot.
func (s *Suite) Registry(t testing.TB) []string {
	t.Helper()
	ids, _, err := s.ZK.Children(s.Env.Path("/registry"))
	if err != nil {
		t.Fatalf("list registry: %v", err)
	}
	return ids
}

// TermsOf reads the leadership terms of every manager process.
func TermsOf(t testing.TB, ps ...*Proc) []Term {
	t.Helper()
	var terms []Term
	for _, p := range ps {
		tm, err := Terms(p.Name, p.Log())
		if err != nil {
			t.Fatal(err)
		}
		terms = append(terms, tm...)
	}
	return terms
}

// Live is a process's Health plus its live heap: HeapAlloc right after a
// forced GC (its /debug/pprof/heap?gc=1). A Go process's RSS is not a leak
// detector on its own: between two GCs the heap grows to twice the live
// data (GOGC=100), and the runtime returns freed pages to the OS only
// slowly, so the RSS after a burst of load stays up for minutes whether or
// not anything leaked (a manager at 21 MiB RSS grew to 51 MiB over 3,000
// requests with only 3 GCs, live heap back to its start). The live heap
// comes back when nothing leaked.
type Live struct {
	Health
	LiveKiB int
}

func (l Live) String() string {
	return fmt.Sprintf("%v, live heap %.1f MiB", l.Health, float64(l.LiveKiB)/1024)
}

var heapAllocRE = regexp.MustCompile(`(?m)^# HeapAlloc = (\d+)`)

// LiveHealth reads p's health after a forced GC (p needs a DebugAddr).
func (p *Proc) LiveHealth(t testing.TB) Live {
	t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + p.DebugAddr + "/debug/pprof/heap?gc=1&debug=1")
	if err != nil {
		t.Fatalf("%s heap: %v", p.Name, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("%s heap: %v", p.Name, err)
	}
	m := heapAllocRE.FindSubmatch(b)
	if m == nil {
		t.Fatalf("%s heap: no HeapAlloc in the profile", p.Name)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return Live{Health: p.Health(t), LiveKiB: n / 1024}
}

// Within reports whether l is back to base: goroutines and fds as
// Health.Within, the live heap at most 10 % (at least 2 MiB) above base's.
// RSS is not compared (see Live); it is logged.
func (l Live) Within(base Live) bool {
	ok := func(v, b, slack int) bool { return v <= b+max(b/10, slack) }
	return (l.Goroutines < 0 || ok(l.Goroutines, base.Goroutines, 5)) &&
		ok(l.FDs, base.FDs, 3) && ok(l.LiveKiB, base.LiveKiB, 2*1024)
}

// BackToBaselineLive waits up to d for p's Live health to come back within
// base and fails t when it does not.
func (p *Proc) BackToBaselineLive(t testing.TB, base Live, d time.Duration) Live {
	t.Helper()
	return backToBaseline(t, p.Name, base, d, time.Second, func() Live { return p.LiveHealth(t) })
}

// CreateMany creates dir/<name> with data for every name, 1,000 per multi.
func CreateMany(t testing.TB, c *zk.Conn, dir string, names []string, data []byte) {
	t.Helper()
	for i := 0; i < len(names); i += 1000 {
		var ops []any
		for _, n := range names[i:min(i+1000, len(names))] {
			ops = append(ops, &zk.CreateRequest{Path: dir + "/" + n, Data: data, Acl: zk.WorldACL(zk.PermAll)})
		}
		if _, err := c.Multi(ops...); err != nil {
			t.Fatalf("create %d nodes under %s: %v", len(ops), dir, err)
		}
	}
}

// DeleteChildren deletes every child of dir (childless ones), 1,000 per
// multi, and returns how many it deleted. c must be able to list dir.
func DeleteChildren(t testing.TB, c *zk.Conn, dir string) int {
	t.Helper()
	names, _, err := c.Children(dir)
	if err != nil {
		t.Fatalf("list %s: %v", dir, err)
	}
	n := 0
	for i := 0; i < len(names); i += 1000 {
		var ops []any
		for _, name := range names[i:min(i+1000, len(names))] {
			ops = append(ops, &zk.DeleteRequest{Path: dir + "/" + name, Version: -1})
		}
		if _, err := c.Multi(ops...); err != nil {
			// Someone deleted one meanwhile: one at a time for this batch.
			for _, op := range ops {
				if err := c.Delete(op.(*zk.DeleteRequest).Path, -1); err == nil {
					n++
				}
			}
			continue
		}
		n += len(ops)
	}
	return n
}

// NumChildren is dir's child count (from its stat: no listing).
func NumChildren(c *zk.Conn, dir string) (int, error) {
	_, st, err := c.Exists(dir)
	if err != nil {
		return 0, err
	}
	return int(st.NumChildren), nil
}

// OnlineNode is one /online node's owner session and creation time.
type OnlineNode struct {
	Owner int64
	Ctime time.Time
}

// WaitOnline waits up to d until /online/<id> exists (want) or not, and
// returns how long that took; it fails t after d.
func (s *Suite) WaitOnline(t testing.TB, id string, want bool, d time.Duration) time.Duration {
	t.Helper()
	return WaitFor(t, d, fmt.Sprintf("/online/%s exists=%v", id, want), func() bool {
		ok, _, err := s.ZK.Exists(s.Env.Path("/online/" + id))
		return err == nil && ok == want
	})
}

// OnlineOwners maps every id under /online to its node's owner session and
// creation time (the server's clock: the same machine's).
func (s *Suite) OnlineOwners(t testing.TB) map[string]OnlineNode {
	t.Helper()
	ids, err := s.OnlineIDs()
	if err != nil {
		t.Fatalf("list online: %v", err)
	}
	out := map[string]OnlineNode{}
	for _, id := range ids {
		ok, st, err := s.ZK.Exists(s.Env.Path("/online/" + id))
		if err != nil {
			t.Fatalf("online %s: %v", id, err)
		}
		if ok {
			out[id] = OnlineNode{Owner: st.EphemeralOwner, Ctime: time.UnixMilli(st.Ctime)}
		}
	}
	return out
}

// Slowest describes the n slowest successful attempts, with their start
// relative to at.
func (r *Requests) Slowest(n int, at time.Time) []string {
	as := r.Attempts()
	sort.Slice(as, func(i, j int) bool { return as[i].End.Sub(as[i].Start) > as[j].End.Sub(as[j].Start) })
	var out []string
	for _, a := range as[:min(n, len(as))] {
		out = append(out, fmt.Sprintf("%s took %v, started %v after", a.Key, a.End.Sub(a.Start).Round(time.Millisecond), a.Start.Sub(at).Round(time.Millisecond)))
	}
	return out
}
