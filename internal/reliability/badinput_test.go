package reliability

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/go-zookeeper/zk"

	"github.com/zkchat/zkchat/bridge"
	"github.com/zkchat/zkchat/internal/irctest"
	"github.com/zkchat/zkchat/internal/testenv"
	"github.com/zkchat/zkchat/protocol"
)

// TestBadInput sends hostile input through every door of a deployment (a
// bridge process with its built-in manager, a manager process, IRC users,
// an in-process worker, a foreign Kafka producer, ZooKeeper by hand) and
// checks what comes out: at an observer IRC user, exactly the expected
// lines (bridge.Sanitize + bridge.Split, reassembled: the documented
// transformation), nothing else; at the sender, a notice for what is not a
// command; from the manager, status 0 for bad requests; no panic anywhere.
// bridge's unit tests (split fuzz, TestBadInput) check Sanitize and Split
// themselves; this checks the whole path on the cluster.
func TestBadInput(t *testing.T) {
	s := New(t)
	irc := StartIRC(t)
	tag := testenv.Tag()
	channel, bot := "#bi"+tag, "zi"+tag
	m1 := s.Manager("m1")
	br := s.Bridge("bridge", irc.Bots, bot, channel)
	loadWaitSynced(t, br, 1)
	ctx := Ctx(t, 10*time.Minute)

	// alice's nick has the characters IRC allows beyond letters (folded
	// and escaped into an id); bob is the observer.
	aliceNick, bobNick := "Al[i]`^"+tag, "bob"+tag
	aliceID, err := bridge.NickToID(aliceNick, bridge.RFC1459)
	if err != nil {
		t.Fatal(err)
	}
	bobID := bobNick
	alice := DialIRC(t, irc.Users, aliceNick, nil)
	bob := DialIRC(t, irc.Users, bobNick, nil)
	for _, u := range []*irctest.Client{alice, bob} {
		u.Send("JOIN " + channel)
		u.Send("PRIVMSG " + bot + " :register")
		// The last line of the answer to register.
		if _, ok := u.TryWait(60*time.Second, fromBot(bot, "NOTICE", regexp.MustCompile(`anyone who takes your nick`))); !ok {
			t.Fatalf("%s: no answer to register", u.Nick)
		}
	}
	WaitFor(t, 60*time.Second, "alice and bob online", func() bool {
		ids, _ := s.OnlineIDs()
		return strings.Contains(strings.Join(ids, " "), aliceID) && strings.Contains(strings.Join(ids, " "), bobID)
	})
	carol := s.Online(ctx, "ca"+tag)[0]

	lines := 0
	// expect reads bot lines at bob until they reassemble to want, and
	// checks each line: within 512 bytes, no NUL, \x01, CR or LF.
	expect := func(name, want string) {
		t.Helper()
		var got strings.Builder
		for got.Len() < len(want) {
			l, ok := bob.TryWait(60*time.Second, anyText)
			if !ok {
				t.Errorf("%s: got %q, want %q (no more lines)", name, got.String(), want)
				return
			}
			lines++
			if len(l)+2 > 512 {
				t.Errorf("%s: line of %d bytes: %q", name, len(l)+2, l)
			}
			if strings.ContainsAny(l, "\x00\x01\r\n") {
				t.Errorf("%s: control character on the wire: %q", name, l)
			}
			from, text, ok := irctest.TextOf(l, bobNick)
			if !ok || !strings.EqualFold(from, bot) {
				t.Errorf("%s: unexpected line at the observer: %q", name, l)
				continue
			}
			got.WriteString(text)
		}
		if got.String() != want {
			t.Errorf("%s: reassembled text differs:\n got %q\nwant %q", name, got.String(), want)
		}
	}

	// 1. IRC text via the bot: "msg <nick> <text>" and "<nick>: <text>".
	// CR, LF and NUL cannot be inside an IRC line (they end it): those go
	// through the other doors below.
	ircTexts := map[string]string{
		"plain":          "hello there",
		"ctcp-dcc":       "a\x01DCC SEND evil 2130706433 6667 1\x01b",
		"ctcp-action":    "\x01ACTION waves\x01",
		"bidi-zw":        "abc\u202Edef\u200Bghi\u200D",
		"invalid-utf8":   "a\xffb\xc3",
		"colon-leading":  ":colon :more",
		"format-codes":   "\x02bold\x02 \x03" + "4red\x0f",
		"command-inside": "PRIVMSG #x :evil",
	}
	for _, name := range sortedKeys(ircTexts) {
		text := ircTexts[name]
		alice.Send("PRIVMSG " + bot + " :msg " + bobNick + " " + text)
		expect("irc msg "+name, "<"+aliceNick+"> "+bridge.Sanitize(strings.TrimLeft(text, " ")))
		alice.Send("PRIVMSG " + bot + " :" + bobNick + ": " + text)
		expect("irc nick: "+name, "<"+aliceNick+"> "+bridge.Sanitize(text))
	}

	// 2. Bot commands that are not messages: a notice to the sender,
	// nothing to anyone else.
	help := regexp.MustCompile(`Messages to you arrive`)
	cmds := []struct{ line, first string }{
		{"msg", "Usage: msg"},
		{"msg " + bobNick, "Usage: msg"},
		{"msg " + bobNick + "    ", "Usage: msg"},
		{bobNick + ":", "Usage: msg"},
		{bobNick + ": ", "Usage: msg"},
		{": :", "Unknown command"},
		{"register extra words", "Unknown command"},
		{"\x02bold\x02", "Unknown command"},
		{strings.Repeat("ü", 200), "Unknown command"},
		{"help", "zkchat bridge"},
		{"msg ../x hi", "Not sent"},
		{"msg a/b hi", "Not sent"},
		{"msg 😀 hi", "Not sent"},
		{"msg " + strings.Repeat("a", 300) + " hi", "Not sent"},
		{"msg ghost" + tag + " hi", "Not sent"},
		{"msg cli_user hi", "Not sent"},
	}
	for _, c := range cmds {
		alice.Send("PRIVMSG " + bot + " :" + c.line)
		if _, ok := alice.TryWait(60*time.Second, fromBot(bot, "NOTICE", regexp.MustCompile(regexp.QuoteMeta(c.first)))); !ok {
			t.Errorf("command %q: no notice %q", c.line, c.first)
		}
		if c.line == "help" { // a typo gets its one line, not the whole help
			if _, ok := alice.TryWait(30*time.Second, fromBot(bot, "NOTICE", help)); !ok {
				t.Errorf("command %q: no help", c.line)
			}
		}
	}
	// A CTCP to the bot is not a command (girc answers VERSION itself).
	alice.Send("PRIVMSG " + bot + " :\x01VERSION\x01")
	alice.Send("PRIVMSG " + bot + " :\x01DCC SEND x 1 2 3\x01")

	// 3. Worker texts (what a CLI user can send): control characters,
	// CTCP, invalid UTF-8, bidi, empty, ':'-leading, and long texts with
	// multi-byte characters across every split point.
	workerTexts := map[string]string{
		"crlf-injection": "a\r\nPRIVMSG #" + channel[1:] + " :evil\r\nQUIT :bye",
		"lone-cr":        "a\rb",
		"lone-lf":        "a\nb",
		"nul":            "a\x00b\x00",
		"ctcp":           "\x01DCC SEND evil 2130706433 6667 1\x01",
		"invalid-utf8":   "\xff\xfe ok \xc3",
		"bidi-zw":        "\u202Egnp.exe\u200B",
		"empty":          "",
		"colon-leading":  ":x :y",
		"spaces":         "   ",
	}
	for _, n := range []int{400, 1000, 2500, 4000} { // at most protocol.MaxMessageBytes
		for shift := range 4 { // 1..4-byte characters land on every cut
			var b strings.Builder
			b.WriteString(strings.Repeat("x", shift))
			for i := 0; b.Len() < n; i++ {
				b.WriteString([]string{"é", "€", "😀", "a", "ü€😀 "}[i%5])
			}
			workerTexts[fmt.Sprintf("long-%d-%d", n, shift)] = b.String()
		}
	}
	for _, name := range sortedKeys(workerTexts) {
		text := workerTexts[name]
		if err := carol.SendMessage(ctx, bobID, text); err != nil {
			t.Fatalf("worker %s: %v", name, err)
		}
		// carol signs nothing (no key): the bridge marks her nick "?"
		// (--unverified-mark), as every record of the foreign producer below.
		want := "<" + carol.ID() + "?> " + bridge.Sanitize(text)
		if name == "empty" {
			// girc writes a last parameter that ends in a space as is;
			// InspIRCd keeps it.
			want = "<" + carol.ID() + "?> "
		}
		expect("worker "+name, want)
	}

	// 4. Records from a foreign producer, straight into bob's topic:
	// with and without key, a key that is no user, hostile keys, invalid
	// UTF-8. The sender shown is the key if it is a valid id (none of
	// these has a nick that maps back to it), else protocol.ShowSender's
	// quoted, escaped form.
	p, err := ckafka.NewProducer(&ckafka.ConfigMap{"bootstrap.servers": s.Env.Kafka, "go.logs.channel.enable": true})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	go func() {
		for range p.Logs() {
		}
	}()
	topic := s.Topic(bobID)
	produce := func(key []byte, value string) {
		t.Helper()
		dc := make(chan ckafka.Event, 1)
		if err := p.Produce(&ckafka.Message{TopicPartition: ckafka.TopicPartition{Topic: &topic, Partition: 0},
			Key: key, Value: []byte(value)}, dc); err != nil {
			t.Fatal(err)
		}
		if m := (<-dc).(*ckafka.Message); m.TopicPartition.Error != nil {
			t.Fatal(m.TopicPartition.Error)
		}
	}
	foreign := []struct {
		name  string
		key   []byte
		value string
	}{
		{"registered key", []byte(carol.ID()), "from carol, by hand"},
		{"no key", nil, "keyless"},
		{"unknown key", []byte("ghost" + tag), "who?"},
		{"key with CR LF", []byte("x\r\nPRIVMSG #" + channel[1:] + " :evil"), "crlf key"},
		{"key with NUL and CTCP", []byte("x\x00\x01y"), "nul key"},
		{"escaped key decoding to controls", []byte("evil_00_01_0d_0a"), "escaped key"},
		{"invalid UTF-8 key and value", []byte("k\xff"), "v\xff\xfe"},
		{"long key", []byte(strings.Repeat("k", 600)), "long key"},
	}
	for _, f := range foreign {
		produce(f.key, f.value)
		expect("kafka "+f.name, "<"+protocol.ShowSender(string(f.key))+"?> "+bridge.Sanitize(f.value))
	}

	// Nothing else reaches bob: no further line from the bot, nothing in
	// the channel.
	if l, ok := bob.TryWait(5*time.Second, anyText); ok {
		t.Errorf("unexpected line at the observer: %q", l)
	}

	// 5. ZooKeeper request nodes written by hand.
	acl := zk.WorldACL(zk.PermAll)
	// answer waits for the manager's answer: the node's first change.
	answer := func(path string) string {
		var data []byte
		WaitFor(t, 60*time.Second, "answer to "+path, func() bool {
			d, st, err := s.ZK.Get(path)
			data = d
			return err == nil && st.Version > 0
		})
		return string(data)
	}
	// Ids ZooKeeper itself refuses: no node, nothing to answer.
	for _, id := range []string{"../x", "a/b", "", ".", ".."} {
		path := s.Env.Path("/request/enroll/" + id)
		if _, err := s.ZK.Create(path, []byte("-1"), 0, acl); err == nil {
			t.Errorf("ZooKeeper took a request for id %q", id)
			_ = s.ZK.Delete(path, -1)
		}
	}
	badIDs := []string{strings.Repeat("a", 300), "a b", "ünï", "UPPER", "_x", "-x", "a\x00b", "a\u202Eb", "x" + tag + "😀"}
	answers := map[string]string{}
	for _, dir := range []string{"enroll", "quit"} {
		for _, id := range badIDs {
			path := s.Env.Path("/request/" + dir + "/" + id)
			if _, err := s.ZK.Create(path, []byte("-1"), 0, acl); err != nil {
				t.Logf("ZooKeeper refused %s request %q: %v", dir, id, err)
				continue
			}
			got := answer(path)
			answers[dir+" "+id] = got
			if got != "0" {
				t.Errorf("%s request for bad id %q answered %q, want 0", dir, id, got)
			}
			_ = s.ZK.Delete(path, -1)
		}
	}
	// Bad data on a good id: answered 0, nothing registered.
	for i, data := range [][]byte{[]byte("garbage"), nil, []byte("7"), []byte("\xff\x00"), []byte(strings.Repeat("-1", 300000))} {
		id := fmt.Sprintf("gd%d-%s", i, tag)
		path := s.Env.Path("/request/enroll/" + id)
		if _, err := s.ZK.Create(path, data, 0, acl); err != nil {
			t.Fatalf("create %s: %v", path, err)
		}
		if got := answer(path); got != "0" {
			t.Errorf("request with data %.20q answered %q, want 0", data, got)
		}
		_ = s.ZK.Delete(path, -1)
		if ok, _, _ := s.ZK.Exists(s.Env.Path("/registry/" + id)); ok {
			t.Errorf("request with data %.20q registered %s", data, id)
		}
	}
	// An /online node of an invalid or unregistered id: deleted.
	for _, id := range []string{"UPPER", "nobody" + tag} {
		path := s.Env.Path("/online/" + id)
		if _, err := s.ZK.Create(path, nil, zk.FlagEphemeral, acl); err != nil {
			t.Fatal(err)
		}
		WaitFor(t, 60*time.Second, "manager deletes "+path, func() bool {
			ok, _, err := s.ZK.Exists(path)
			return err == nil && !ok
		})
	}
	for _, id := range badIDs {
		if ok, _, _ := s.ZK.Exists(s.Env.Path("/registry/" + id)); ok {
			t.Errorf("bad id %q registered", id)
		}
	}
	// The managers still run and still answer.
	for _, p := range []*Proc{m1, br} {
		if done, code := p.Exited(); done {
			t.Errorf("%s exited (code %d)", p.Name, code)
		}
	}
	if st, err := s.Worker("after" + tag).Register(ctx); err != nil || st != protocol.StatusDone {
		t.Errorf("a good registration after the bad input: %v, %v", st, err)
	}
	NoPanic(t, m1.Log(), br.Log())
	Row(t, "bad input through every door", "irc_cases", 2*len(ircTexts), "commands", len(cmds),
		"worker_cases", len(workerTexts), "kafka_cases", len(foreign), "zk_bad_ids", len(answers),
		"observer_lines", lines, "extra_lines", 0, "panics", 0)
}

// fromBot matches a line from bot with command (PRIVMSG or NOTICE) whose
// text matches re.
func fromBot(bot, command string, re *regexp.Regexp) func(string) bool {
	return func(l string) bool {
		f := strings.SplitN(l, " ", 4)
		return len(f) == 4 && strings.HasPrefix(f[0], ":") && strings.EqualFold(strings.TrimPrefix(strings.SplitN(f[0], "!", 2)[0], ":"), bot) &&
			f[1] == command && re.MatchString(f[3])
	}
}

// anyText matches any PRIVMSG or NOTICE (to the client or a channel).
func anyText(l string) bool {
	f := strings.SplitN(l, " ", 3)
	return len(f) >= 2 && strings.HasPrefix(f[0], ":") && (f[1] == "PRIVMSG" || f[1] == "NOTICE") && strings.Contains(f[0], "!")
}

func sortedKeys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
