package reliability

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkchat/zkchat/client"
	"github.com/zkchat/zkchat/internal/irctest"
	"github.com/zkchat/zkchat/internal/testenv"
	"github.com/zkchat/zkchat/protocol"
)

// long is set by ZKCHAT_RELIABILITY_LONG=1: the load rows run for their
// full length (a minute of registrations, three minutes of JOIN/PART)
// instead of the shorter CI length.
func loadLong() bool { return os.Getenv("ZKCHAT_RELIABILITY_LONG") == "1" }

var loadSyncedRE = regexp.MustCompile(`msg="channel member list read`)

// loadWaitSynced waits until the bridge process has joined its channel and read
// the member list for the n-th time (from 1).
func loadWaitSynced(t testing.TB, br *Proc, n int) {
	t.Helper()
	WaitFor(t, 60*time.Second, br.Name+" synced", func() bool {
		return len(loadSyncedRE.FindAllStringIndex(br.Log(), -1)) >= n
	})
}

// loadSampler samples a process's health every interval until stopped, and
// keeps the peak RSS and the largest goroutine count.
type loadSampler struct {
	stop    chan struct{}
	done    chan struct{}
	peak    Health
	samples int
}

func loadSampleHealth(t testing.TB, p *Proc, every time.Duration) *loadSampler {
	s := &loadSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tk := time.NewTicker(every)
		defer tk.Stop()
		for {
			if pid := p.PID(); pid != 0 {
				if h, err := HealthOf(pid, p.DebugAddr); err == nil {
					s.samples++
					s.peak.RSSKiB = max(s.peak.RSSKiB, h.RSSKiB)
					s.peak.Goroutines = max(s.peak.Goroutines, h.Goroutines)
					s.peak.FDs = max(s.peak.FDs, h.FDs)
				}
			}
			select {
			case <-tk.C:
			case <-s.stop:
				return
			}
		}
	}()
	return s
}

func (s *loadSampler) Stop() Health {
	close(s.stop)
	<-s.done
	return s.peak
}

// loadMemStats reads the Go runtime's memory numbers (bytes) of a process
// from its /debug/pprof/heap?debug=1, after a GC (gc=1): how much of its RSS
// is Go heap in use, heap the runtime keeps but does not use, or not Go at
// all (librdkafka's C memory).
func loadMemStats(p *Proc) map[string]int {
	out := map[string]int{}
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + p.DebugAddr + "/debug/pprof/heap?debug=1&gc=1")
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, m := range loadMemRE.FindAllSubmatch(b, -1) {
		n, _ := strconv.Atoi(string(m[2]))
		out[string(m[1])] = n
	}
	return out
}

var loadMemRE = regexp.MustCompile(`(?m)^# (Sys|HeapSys|HeapInuse|HeapIdle|HeapReleased|StackInuse) = (\d+)`)

func loadMemString(p *Proc) string {
	m := loadMemStats(p)
	var out []string
	for _, k := range []string{"Sys", "HeapInuse", "HeapIdle", "HeapReleased", "StackInuse"} {
		out = append(out, k+"="+loadMiB(m[k]/1024))
	}
	return strings.Join(out, " ")
}

// loadSettled waits up to d for a process to be back to its baseline after
// a load: goroutines and fds as Health.Within says, and memory either as
// Within says (RSS) or, when the Go runtime still holds freed heap it has
// not yet returned to the system (its scavenger returns it over minutes),
// the Go heap in use after a GC back within baseHeap (+10 %, at least
// 8 MiB): a leak keeps heap in use, retention does not. It fails t and
// returns the last reading.
func loadSettled(t testing.TB, p *Proc, base Health, baseHeap int, d time.Duration) (Health, string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		h := p.Health(t)
		heap := loadMemStats(p)["HeapInuse"]
		counts := h
		counts.RSSKiB = base.RSSKiB
		rssOK := h.Within(base)
		heapOK := heap <= baseHeap+max(baseHeap/10, 8<<20)
		how := fmt.Sprintf("%v, Go heap in use %s (baseline %v, heap %s)", h, loadMiB(heap/1024), base, loadMiB(baseHeap/1024))
		if counts.Within(base) && (rssOK || heapOK) {
			if !rssOK {
				how += "; RSS above baseline: freed heap the Go runtime has not returned yet"
			}
			t.Logf("%s back to baseline: %s", p.Name, how)
			return h, how
		}
		if time.Now().After(deadline) {
			t.Errorf("%s not back to baseline after %v: %s", p.Name, d, how)
			return h, how
		}
		time.Sleep(2 * time.Second)
	}
}

// loadGoroutines is the process's goroutine dump (debug=2), for a stall.
func loadGoroutines(p *Proc) string {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + p.DebugAddr + "/debug/pprof/goroutine?debug=2")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 200000))
	return string(b)
}

func loadMiB(kib int) string { return fmt.Sprintf("%.1fMiB", float64(kib)/1024) }

// TestLoadBacklogOneNick: 10,000 messages of 1 KiB (three IRC lines each)
// wait in Kafka for one IRC nick, then the nick joins and the bridge process
// (unpaced, on its flood-exempt port) delivers them all. The bridge reads
// its topic with a bounded queue (protocol pauses the partition at 256
// queued records), so its RSS must stay flat while it delivers: the backlog
// stays in Kafka.
//
// The messages are sent while the receiver's id is online in another
// session (an in-process worker: only an online user can be sent to) and
// the nick is not in the channel; the worker then goes offline and the nick
// joins, so the whole backlog is unread when the bridge starts on it.
//
// Duplicates: a delivery proof (PING/PONG) that fails restarts delivery
// from the last commit. Before the fix in client.Worker.read, nothing was
// committed while a backlog was read, so one failed proof (the IRC server
// starved of CPU on this shared machine) sent the whole backlog again, and
// made the next proof later still: 6,319, 22,504 and 43,054 duplicates of
// 10,000 in three runs. Now a failed proof may repeat what was sent since
// the last commit: at most the bridge's output queue (1,024 lines) queued
// behind the proof, as many queued after it, and what the sockets hold,
// stated here as 3,072 messages per failed proof (counted in the log).
// ZKCHAT_LOAD_PACED=1 runs it paced at 500 lines/s with one-line messages.
func TestLoadBacklogOneNick(t *testing.T) {
	size, pace := 1024, []string(nil)
	if os.Getenv("ZKCHAT_LOAD_PACED") == "1" {
		size, pace = 350, []string{"--rate", "500", "--burst", "500"}
	}
	const (
		n       = 10000
		senders = 10
		// The bound on the bridge's RSS growth while it delivers. Measured
		// (with 1 KiB messages): 89-93 MiB before the fix of
		// kafka.GoChannelSizes (a producer's Go channels were 23 MB of
		// live heap, so the collector let the heap grow to twice that),
		// 24-28 MiB after it (garbage between collections, librdkafka's
		// fetch buffers); 27.7-32.3 MiB after the sharded Kafka clients
		// of issue 10 (32.3 failed CI), the same 29.4-29.5 with
		// librdkafka's fetch-ahead bounded to 2 MiB (readerQueueKiB):
		// Go heap between collections, a quarter of whose allocations
		// are girc formatting each line it sends for its debug log
		// (allocs profile). The bound still catches the 90 MiB bug.
		maxGrowthKiB = 40 * 1024
	)
	s := New(t)
	irc := StartIRC(t)
	tag := testenv.Tag()
	channel, bot, nick := "#bl"+tag, "zb"+tag, "rcv"+tag
	br := s.Bridge("bridge", irc.Bots, bot, channel, pace...)
	loadWaitSynced(t, br, 1)
	ctx := Ctx(t, 10*time.Minute)

	ids := []string{nick}
	for i := range senders {
		ids = append(ids, fmt.Sprintf("snd%d-%s", i, tag))
	}
	ws := s.Online(ctx, ids...)
	holder, from := ws[0], ws[1:]
	pad := strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyz", size/36+1)
	backlogKiB := n * size / 1024
	t0 := time.Now()
	var wg sync.WaitGroup
	var sendErrs atomic.Int64
	for k, w := range from {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int64(0); i < n/senders; i++ {
				seq := i
				text := s.Ledger.Text(w.ID(), nick, seq)
				text += " " + pad[:size-len(text)-1]
				err := w.SendMessage(ctx, nick, text)
				s.Ledger.Sent(w.ID(), nick, seq, err)
				if err != nil && sendErrs.Add(1) < 5 {
					t.Logf("sender %d: send %d: %v", k, seq, err)
				}
			}
		}()
	}
	wg.Wait()
	sendTime := time.Since(t0)
	if e := sendErrs.Load(); e > 0 {
		t.Fatalf("%d of %d sends failed", e, n)
	}
	t.Logf("queued %d messages of %d bytes in %v (%.0f/s)", n, size, sendTime.Round(time.Millisecond), n/sendTime.Seconds())
	holder.GoOffline()
	WaitFor(t, 30*time.Second, "receiver offline", func() bool {
		ok, _, err := s.ZK.Exists(s.Env.Path("/online/" + nick))
		return err == nil && !ok
	})

	WaitNickFree(t, irc.Users, nick) // its puppet's

	// The observer must keep up: a Ledger.Report per poll, under the
	// ledger's lock, slowed its reading enough to delay the bridge's
	// delivery proofs. Distinct messages are counted here instead.
	var lines atomic.Int64
	var distinctMu sync.Mutex
	distinct := map[string]bool{}
	c := DialIRC(t, irc.Users, nick, func(from, text string) {
		if from == bot {
			lines.Add(1)
			s.Ledger.Saw("irc", text)
			if m := msgRE.FindString(text); m != "" {
				distinctMu.Lock()
				distinct[m] = true
				distinctMu.Unlock()
			}
		}
	})
	// The bridge idles with every client in place: its baseline.
	time.Sleep(2 * time.Second)
	base := br.Health(t)
	smp := loadSampleHealth(t, br, 500*time.Millisecond)
	c.Send("JOIN " + channel)
	t1 := time.Now()
	delivered := func() int {
		distinctMu.Lock()
		defer distinctMu.Unlock()
		return len(distinct)
	}
	stuck := 0
	last := -1
	WaitFor(t, 4*time.Minute, "backlog delivered", func() bool {
		d := delivered()
		if d == last {
			stuck++
		} else {
			stuck, last = 0, d
		}
		if stuck == 300 { // 30 s without progress: show where the bridge is
			t.Logf("no delivery for 30 s at %d of %d; bridge goroutines:\n%s", d, n, loadGoroutines(br))
		}
		return d >= n
	})
	deliverTime := time.Since(t1)
	time.Sleep(3 * time.Second) // duplicates, if any, come now
	peak := smp.Stop()
	failedProofs := strings.Count(br.Log(), `msg="delivery stopped`)
	r := s.Ledger.Report("irc", nil)
	r.Check(t, 3072*failedProofs, 0)
	growth := peak.RSSKiB - base.RSSKiB
	t.Logf("bridge baseline %v; peak during delivery %v (%d samples); %d IRC lines; Go memory now: %s", base, peak, smp.samples, lines.Load(), loadMemString(br))
	if growth > maxGrowthKiB {
		t.Errorf("bridge RSS grew by %s while delivering a backlog of %s (bound %s)", loadMiB(growth), loadMiB(backlogKiB), loadMiB(maxGrowthKiB))
	}
	after := br.Health(t)
	// Kafka holds what was sent (the receiver's topic, dumped).
	s.Ledger.SawTopic(t, s.Env.Kafka, s.Topic(nick))
	s.Ledger.Report("kafka", nil).Check(t, 0, 0)
	NoPanic(t, br.Log())
	Row(t, "load: backlog of 10,000 for one nick", "messages", n, "bytes", size,
		"lost", r.Lost, "dup", r.Duplicated, "reordered", r.Reordered, "failed_proofs", failedProofs,
		"send_rate", fmt.Sprintf("%.0f/s", n/sendTime.Seconds()),
		"deliver_rate", fmt.Sprintf("%.0f msg/s", n/deliverTime.Seconds()),
		"deliver_time", deliverTime.Round(time.Millisecond),
		"rss_base", loadMiB(base.RSSKiB), "rss_peak", loadMiB(peak.RSSKiB), "rss_growth", loadMiB(growth),
		"goroutines_peak", peak.Goroutines, "after", after)
}

// loadPercentile is the p-th percentile (0..1) of sorted durations.
func loadPercentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*p))]
}

var loadAnsweredRE = regexp.MustCompile(`(?m)^time=\S+ level=\S+ msg="request answered" .*?\bkind=enroll id=(\S+)`)

// TestLoadRegistrations: register requests at 1,000 a second (offered) for
// 30 s (a minute with ZKCHAT_RELIABILITY_LONG=1) against two manager
// processes, made as raw ZooKeeper requests (create /request/enroll/<id> =
// -1, watch it until answered, delete it: what client.Worker does) over
// 16 connections, each id new. Every request must be answered exactly once
// (status 1, one "request answered" line in the managers' logs, one
// /registry node); the achieved rate and the answer latency are measured,
// not asserted (a 2-core machine shared with other clusters). The
// managers' goroutines, fds and RSS must come back to their baseline
// within a minute after the load.
func TestLoadRegistrations(t *testing.T) {
	const (
		rate  = 1000
		conns = 16
		pool  = 512 // requests in flight at most
	)
	dur := 30 * time.Second
	if loadLong() {
		dur = time.Minute
	}
	s := New(t)
	m1, m2 := s.Manager("m1"), s.Manager("m2")
	leading := regexp.MustCompile(`msg="became leader"`)
	WaitFor(t, 60*time.Second, "a leader", func() bool {
		return leading.MatchString(m1.Log()) || leading.MatchString(m2.Log())
	})
	var cs []*zk.Conn
	for range conns {
		c, _, err := zk.Connect(strings.Split(s.Env.ZKServers, ","), 10*time.Second, zk.WithLogger(loadQuietZK{}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		cs = append(cs, c)
	}
	// Sessions established before the clock starts.
	for _, c := range cs {
		if _, _, err := c.Exists(s.Env.Path("/request/enroll")); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(3 * time.Second)
	base1, base2 := m1.Health(t), m2.Health(t)
	heap1, heap2 := loadMemStats(m1)["HeapInuse"], loadMemStats(m2)["HeapInuse"]
	smp1, smp2 := loadSampleHealth(t, m1, 500*time.Millisecond), loadSampleHealth(t, m2, 500*time.Millisecond)

	tag := testenv.Tag()
	acl := zk.WorldACL(zk.PermAll)
	pending := protocol.StatusPending.Bytes()
	type result struct {
		lat time.Duration
		st  string
		err error
	}
	register := func(c *zk.Conn, id string) result {
		path := s.Env.Path("/request/enroll/" + id)
		t0 := time.Now()
		if _, err := c.Create(path, pending, 0, acl); err != nil {
			return result{err: fmt.Errorf("create: %w", err)}
		}
		var r result
		for {
			data, _, ch, err := c.GetW(path)
			if err != nil {
				r.err = fmt.Errorf("watch: %w", err)
				break
			}
			if string(data) != string(pending) {
				r.lat, r.st = time.Since(t0), string(data)
				break
			}
			select {
			case <-ch:
			case <-time.After(60 * time.Second):
				r.err = fmt.Errorf("not answered in 60 s")
			}
			if r.err != nil {
				break
			}
		}
		if err := c.Delete(path, -1); err != nil && r.err == nil {
			r.err = fmt.Errorf("delete: %w", err)
		}
		return r
	}

	jobs := make(chan int)
	var mu sync.Mutex
	results := map[string]result{}
	var wg sync.WaitGroup
	for g := range pool {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				id := fmt.Sprintf("r%s-%d", tag, i)
				r := register(cs[(g+i)%conns], id)
				mu.Lock()
				results[id] = r
				mu.Unlock()
			}
		}()
	}
	// Open loop at rate, as long as fewer than pool requests are in
	// flight (else the offered rate is not reached: reported).
	t0 := time.Now()
	offered := 0
	for time.Since(t0) < dur {
		due := int(time.Since(t0).Seconds() * rate)
		for ; offered < due; offered++ {
			jobs <- offered
		}
		time.Sleep(time.Millisecond)
	}
	close(jobs)
	wg.Wait()
	elapsed := time.Since(t0)
	peak1, peak2 := smp1.Stop(), smp2.Stop()

	var lats []time.Duration
	errs := map[string]int{}
	var errSample []string
	for id, r := range results {
		switch {
		case r.err != nil:
			errs["error"]++
			if len(errSample) < 5 {
				errSample = append(errSample, id+": "+r.err.Error())
			}
		case r.st != string(protocol.StatusDone.Bytes()):
			errs["status "+r.st]++
			if len(errSample) < 5 {
				errSample = append(errSample, id+": status "+r.st)
			}
		default:
			lats = append(lats, r.lat)
		}
	}
	slices.Sort(lats)
	achieved := float64(len(results)) / elapsed.Seconds()
	p50, p99 := loadPercentile(lats, 0.5), loadPercentile(lats, 0.99)
	t.Logf("%d requests in %v: %.0f/s answered (offered %d/s); latency p50 %v p99 %v max %v; errors %v %v",
		len(results), elapsed.Round(time.Millisecond), achieved, rate, p50, p99, loadPercentile(lats, 1), errs, errSample)
	if len(results) != offered {
		t.Errorf("%d requests made, %d results", offered, len(results))
	}
	if len(errs) > 0 {
		t.Errorf("requests not answered 1 (registered now): %v, e.g. %v", errs, errSample)
	}

	// Exactly once: one "request answered" per id in the managers' logs,
	// one /registry node per id, and no request left behind.
	WaitFor(t, 30*time.Second, "answers logged", func() bool {
		return len(loadAnsweredRE.FindAllString(m1.Log()+m2.Log(), -1)) >= offered
	})
	answers := map[string]int{}
	for _, m := range loadAnsweredRE.FindAllStringSubmatch(m1.Log()+m2.Log(), -1) {
		answers[m[1]]++
	}
	var twice, never int
	for id := range results {
		switch answers[id] {
		case 0:
			never++
		case 1:
		default:
			twice++
		}
	}
	if twice > 0 || never > 0 || len(answers) != len(results) {
		t.Errorf("answers in the managers' logs: %d ids answered twice or more, %d never, %d answered ids for %d requests", twice, never, len(answers), len(results))
	}
	reg, _, err := s.ZK.Children(s.Env.Path("/registry"))
	if err != nil {
		t.Fatal(err)
	}
	if len(reg) != len(results) {
		t.Errorf("/registry holds %d ids, want %d", len(reg), len(results))
	}
	left, _, err := s.ZK.Children(s.Env.Path("/request/enroll"))
	if err != nil || len(left) != 0 {
		t.Errorf("/request/enroll after the load: %d nodes (err %v)", len(left), err)
	}
	terms := TermsOf(t, m1, m2)
	if len(terms) != 1 {
		t.Errorf("want one leadership term, got %v", terms)
	}
	NoOverlap(t, terms, nil)

	t.Logf("m1 baseline %v peak %v; m2 baseline %v peak %v", base1, peak1, base2, peak2)
	t.Logf("Go memory after the load: m1 %s; m2 %s", loadMemString(m1), loadMemString(m2))
	tb := time.Now()
	after1, _ := loadSettled(t, m1, base1, heap1, 60*time.Second)
	after2, _ := loadSettled(t, m2, base2, heap2, 60*time.Second)
	t.Logf("Go memory now: m1 %s; m2 %s", loadMemString(m1), loadMemString(m2))
	NoPanic(t, m1.Log(), m2.Log())
	Row(t, "load: 1,000 registrations/s", "duration", dur, "requests", len(results),
		"achieved", fmt.Sprintf("%.0f/s", achieved), "p50", p50.Round(time.Microsecond), "p99", p99.Round(time.Microsecond),
		"errors", len(results)-len(lats), "answered_twice", twice, "never", never,
		"m1_base", base1, "m1_peak", peak1, "m1_after", after1,
		"m2_base", base2, "m2_peak", peak2, "m2_after", after2, "back_within", time.Since(tb).Round(time.Second))
}

type loadQuietZK struct{}

func (loadQuietZK) Printf(string, ...any) {}

// TestLoadJoinPart: 100 IRC users (registered) each JOIN or PART the
// channel every 200 ms, for 60 s (3 minutes with ZKCHAT_RELIABILITY_LONG=1).
// Before and after, the first half is in the channel and the second half
// out; afterwards /online must agree with NAMES (exactly the first half),
// the bridge's goroutines, fds and memory must be back to what they were
// with the same users in the channel before the churn, and no log panics.
func TestLoadJoinPart(t *testing.T) {
	const users = 100
	dur := 60 * time.Second
	if loadLong() {
		dur = 3 * time.Minute
	}
	s := New(t)
	irc := StartIRC(t)
	tag := testenv.Tag()
	channel, bot, obsNick := "#jp"+tag, "zj"+tag, "obs"+tag
	br := s.Bridge("bridge", irc.Bots, bot, channel)
	loadWaitSynced(t, br, 1)
	ctx := Ctx(t, 15*time.Minute)

	nicks := make([]string, users)
	for i := range nicks {
		nicks[i] = fmt.Sprintf("jp%s-%03d", tag, i) // its own id
	}
	var wg sync.WaitGroup
	var regErr atomic.Value
	sem := make(chan struct{}, 10)
	for _, n := range nicks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			w, err := client.New(n, client.Config{ZooKeeper: s.Env.ZooKeeper, RequestTimeout: 60 * time.Second,
				Logger: quietLogger(t)})
			if err == nil {
				_, err = w.Register(ctx)
				w.Close()
			}
			if err != nil {
				regErr.Store(err)
			}
		}()
	}
	wg.Wait()
	if err, _ := regErr.Load().(error); err != nil {
		t.Fatalf("register: %v", err)
	}
	obs := DialIRC(t, irc.Users, obsNick, nil)
	obs.Send("JOIN " + channel)
	clients := make([]*irctest.Client, users)
	for i, n := range nicks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			clients[i] = DialIRC(t, irc.Users, n, nil)
		}()
	}
	wg.Wait()
	for _, c := range clients {
		if c == nil {
			t.FailNow()
		}
	}
	online := s.OnlineIDs
	names := func() ([]string, error) {
		ns, err := obs.Names(channel)
		var ids []string
		for _, n := range ns {
			if !strings.EqualFold(n, bot) && !strings.EqualFold(n, obsNick) {
				ids = append(ids, strings.ToLower(n))
			}
		}
		return ids, err
	}
	in := make([]bool, users)
	// Where everyone should end: the first half in the channel.
	settle := func() {
		for i, c := range clients {
			if want := i < users/2; in[i] != want {
				if want {
					c.Send("JOIN " + channel)
				} else {
					c.Send("PART " + channel)
				}
				in[i] = want
			}
		}
	}
	settle()
	t0 := time.Now()
	WaitFor(t, 3*time.Minute, "the first half online", func() bool {
		ids, err := online()
		return err == nil && len(ids) == users/2
	})
	WaitAgree(t, 3*time.Minute, online, names)
	agree0 := time.Since(t0)
	time.Sleep(3 * time.Second)
	base := br.Health(t)
	baseHeap := loadMemStats(br)["HeapInuse"]
	offset := len(br.Log())

	smp := loadSampleHealth(t, br, 500*time.Millisecond)
	var sent atomic.Int64
	stop := make(chan struct{})
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * 200 * time.Millisecond / users) // spread the ticks
			tk := time.NewTicker(200 * time.Millisecond)
			defer tk.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tk.C:
				}
				if in[i] {
					c.Send("PART " + channel)
				} else {
					c.Send("JOIN " + channel)
				}
				in[i] = !in[i]
				sent.Add(1)
			}
		}()
	}
	time.Sleep(dur)
	close(stop)
	wg.Wait()
	settle()
	tAgree := WaitAgree(t, 5*time.Minute, online, names)
	peak := smp.Stop()
	ids, _ := online()
	want := slices.Clone(nicks[:users/2])
	if !slices.Equal(ids, want) {
		t.Errorf("after the churn /online is %v, want the first half %v", ids, want)
	}
	tail := br.Log()[offset:]
	ons, offs := strings.Count(tail, `msg="user online"`), strings.Count(tail, `msg="user offline"`)
	t.Logf("churn: %d JOIN/PART sent in %v by %d users; bridge: %d user online, %d user offline; agreed %v after; peak %v",
		sent.Load(), dur, users, ons, offs, tAgree.Round(time.Millisecond), peak)
	tb := time.Now()
	after, _ := loadSettled(t, br, base, baseHeap, 90*time.Second)
	NoPanic(t, br.Log())
	Row(t, "load: 100 users JOIN/PART every 200 ms", "duration", dur, "users", users, "joins_parts", sent.Load(),
		"bridge_online_events", ons, "bridge_offline_events", offs, "agree_before", agree0.Round(time.Millisecond),
		"agree_after", tAgree.Round(time.Millisecond), "base", base, "peak", peak, "after", after,
		"back_within", time.Since(tb).Round(time.Second))
}
