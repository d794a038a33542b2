package reliability

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/zkchat/zkchat/internal/irctest"
	"github.com/zkchat/zkchat/kafka"
)

// Member is a raw IRC user in a channel that, like a real client, can come
// back (reconnect and rejoin) after its server restarted or dropped it.
type Member struct {
	t                   testing.TB
	Addr, Nick, Channel string
	onText              func(from, text string)

	mu sync.Mutex
	c  *irctest.Client
}

// JoinChannel connects nick to addr and joins channel; onText gets every
// PRIVMSG and NOTICE to the nick (from any connection of it).
func JoinChannel(t testing.TB, addr, nick, channel string, onText func(from, text string)) *Member {
	t.Helper()
	m := &Member{t: t, Addr: addr, Nick: nick, Channel: channel, onText: onText}
	m.Rejoin(60 * time.Second)
	return m
}

// Client is the member's current connection.
func (m *Member) Client() *irctest.Client {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.c
}

// Down reports whether the member's connection has ended.
func (m *Member) Down() bool {
	select {
	case <-m.Client().Done():
		return true
	default:
		return false
	}
}

// Rejoin dials again (waiting up to d for the server to accept), and joins
// the channel; the old connection, if any, is closed first.
func (m *Member) Rejoin(d time.Duration) {
	m.t.Helper()
	if old := m.Client(); old != nil {
		old.Close()
	}
	deadline := time.Now().Add(d)
	for {
		c, err := net.DialTimeout("tcp", m.Addr, 2*time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("%s: server %s not back within %v: %v", m.Nick, m.Addr, d, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	c := DialIRC(m.t, m.Addr, m.Nick, m.onText)
	c.Send("JOIN " + m.Channel)
	me := strings.ToLower(":" + m.Nick + "!")
	if _, ok := c.TryWait(20*time.Second, func(l string) bool {
		return strings.HasPrefix(strings.ToLower(l), me) && strings.Contains(l, " JOIN ")
	}); !ok {
		m.t.Fatalf("%s: JOIN %s not confirmed", m.Nick, m.Channel)
	}
	// The JOIN's own member list (353 ... 366) must not be taken later
	// for the answer to a NAMES.
	if _, ok := c.TryWait(20*time.Second, func(l string) bool {
		f := strings.Fields(l)
		return len(f) > 1 && f[1] == "366"
	}); !ok {
		m.t.Fatalf("%s: no member list after JOIN %s", m.Nick, m.Channel)
	}
	m.mu.Lock()
	m.c = c
	m.mu.Unlock()
}

// Register asks the bot to register the member's nick and waits for the
// answer (registered now, or already).
func (m *Member) Register(bot string) {
	m.t.Helper()
	c := m.Client()
	c.Send("PRIVMSG " + bot + " :register")
	if l, ok := c.TryWait(60*time.Second, func(l string) bool {
		return strings.Contains(l, " NOTICE ") && (strings.Contains(l, "Registered") || strings.Contains(l, "registered already") ||
			strings.Contains(l, "failed"))
	}); !ok || strings.Contains(l, "failed") {
		m.t.Fatalf("%s: register with %s: %q", m.Nick, bot, l)
	}
}

// CountLines counts, and consumes, the lines c has received so far that
// match: c is from DialIRC, whose waits drop what they looked at, so a
// wait that never matches sees every line once and leaves none. c must be
// used for nothing that waits on its lines (Names, TryWait) meanwhile.
func CountLines(c *irctest.Client, match func(string) bool) int {
	n := 0
	c.TryWait(10*time.Millisecond, func(l string) bool {
		if match(l) {
			n++
		}
		return false
	})
	return n
}

// IsCommandOf reports whether line is command (JOIN, QUIT, ...) from nick
// (any case).
func IsCommandOf(line, nick, command string) bool {
	if !strings.HasPrefix(strings.ToLower(line), strings.ToLower(":"+nick+"!")) {
		return false
	}
	f := strings.Fields(line)
	return len(f) >= 2 && f[1] == command
}

// JoinsOf counts, and consumes (see CountLines), the JOIN lines of nick to
// channel that c has received so far.
func JoinsOf(c *irctest.Client, nick, channel string) int {
	return CountLines(c, func(l string) bool {
		f := strings.Fields(l)
		return IsCommandOf(l, nick, "JOIN") && len(f) >= 3 && strings.EqualFold(strings.TrimPrefix(f[2], ":"), channel)
	})
}

// Copies counts every ledger message an observer received, by its text
// ("zkr <run> <from> <to> <seq>"), so a test can tell which messages were
// seen before a fault and which came twice.
type Copies struct {
	mu sync.Mutex
	n  map[string]int
}

// NewCopies makes an empty count.
func NewCopies() *Copies { return &Copies{n: map[string]int{}} }

// Saw counts the ledger messages in text.
func (c *Copies) Saw(text string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range msgRE.FindAllString(text, -1) {
		c.n[m]++
	}
}

// Snapshot is a copy of the counts.
func (c *Copies) Snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.n))
	for k, v := range c.n {
		out[k] = v
	}
	return out
}

// Distinct is how many different messages were seen.
func (c *Copies) Distinct() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.n)
}

// Committed is group's committed offset on partition 0 of topic (-1: none).
func Committed(t testing.TB, brokers, group, topic string) int64 {
	t.Helper()
	ad, err := kafka.NewAdmin(kafka.Config{Brokers: brokers, Logger: slog.New(slog.DiscardHandler)}, "zkchat-suite")
	if err != nil {
		t.Fatalf("admin client: %v", err)
	}
	defer ad.Close()
	a := ad.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := a.ListConsumerGroupOffsets(ctx, []ckafka.ConsumerGroupTopicPartitions{{
		Group: group, Partitions: []ckafka.TopicPartition{{Topic: &topic, Partition: 0}},
	}}, ckafka.SetAdminRequireStableOffsets(true))
	if err != nil {
		t.Fatalf("committed offset of %s: %v", group, err)
	}
	if len(res.ConsumerGroupsTopicPartitions) != 1 || len(res.ConsumerGroupsTopicPartitions[0].Partitions) != 1 {
		t.Fatalf("committed offset of %s: answer %v", group, res)
	}
	tp := res.ConsumerGroupsTopicPartitions[0].Partitions[0]
	if tp.Error != nil {
		t.Fatalf("committed offset of %s: %v", group, tp.Error)
	}
	if tp.Offset < 0 {
		return -1
	}
	return int64(tp.Offset)
}

// Offsets maps each ledger message in topic to its offset.
func Offsets(t testing.TB, brokers, topic string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, r := range DumpTopic(t, brokers, topic) {
		if m := msgRE.FindString(r.Value); m != "" {
			out[m] = r.Offset
		}
	}
	return out
}

// RedeliveryWindow is the number of messages a bridge that stopped with
// committed offset committed may deliver again: those an observer saw
// (seen, a Copies snapshot taken once the bridge was down) at offsets at or
// after the commit. The bridge commits a position only after a PING queued
// behind its lines was answered, so everything before committed was proven
// delivered and must not come again.
func RedeliveryWindow(seen map[string]int, offsets map[string]int64, committed int64) int {
	n := 0
	for m := range seen {
		if off, ok := offsets[m]; ok && off >= committed {
			n++
		}
	}
	return n
}

// LogCount counts the log's lines (after offset bytes) that contain s.
func LogCount(log string, offset int, s string) int {
	if offset > len(log) {
		return 0
	}
	return strings.Count(log[offset:], s)
}
