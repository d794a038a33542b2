package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-zookeeper/zk"
	"github.com/urfave/cli/v2"

	"github.com/zkchat/zkchat/client"
	"github.com/zkchat/zkchat/internal/netcheck"
	"github.com/zkchat/zkchat/kafka"
	"github.com/zkchat/zkchat/protocol"
	"github.com/zkchat/zkchat/zookeeper"
)

// workerEnv is what a worker command needs: the worker and, if the command
// uses Kafka, the process's Kafka clients.
type workerEnv struct {
	w     *client.Worker
	kafka *kafka.Clients
	log   *slog.Logger
}

func (e *workerEnv) close() {
	e.w.Close()
	if e.kafka != nil {
		e.kafka.Close()
	}
}

// reachable fails at once, in plain words, when nothing listens at any
// ZooKeeper server (or, withKafka, at any Kafka bootstrap server) given:
// the clients would retry for 15 s and then say something vaguer (and
// librdkafka adds a SASL hint that has nothing to do with it). A server
// that answers, or may yet (a timeout), is left to the clients.
func reachable(c *cli.Context, withKafka bool) error {
	servers, _, err := protocol.SplitConnect(c.String("zookeeper"))
	if err != nil {
		return usageError{err}
	}
	if err := netcheck.Refused(c.Context, "ZooKeeper", servers); err != nil {
		return fmt.Errorf("%w: is ZooKeeper running, and is --zookeeper right?", err)
	}
	if !withKafka {
		return nil
	}
	if err := netcheck.Refused(c.Context, "Kafka", strings.Split(c.String("kafka"), ",")); err != nil {
		return fmt.Errorf("%w: is Kafka running, and is --kafka right?", err)
	}
	return nil
}

func newWorker(c *cli.Context, id string, withKafka bool) (*workerEnv, error) {
	// One-shot commands print their failure as one line: logs only on request.
	log, err := logger(c, slog.LevelError)
	if err != nil {
		return nil, err
	}
	if err := protocol.ValidateID(id); err != nil {
		return nil, err
	}
	za, err := zkAuth(c)
	if err != nil {
		return nil, err
	}
	if err := reachable(c, withKafka); err != nil {
		return nil, err
	}
	env := &workerEnv{log: log}
	if withKafka {
		topics := protocol.Topics{Prefix: c.String("topic-prefix")}
		ka, group, err := workerKafkaAuth(c, id, za, topics, log)
		if err != nil {
			return nil, err
		}
		env.kafka, err = kafka.New(kafka.Config{
			Brokers:     c.String("kafka"),
			Topics:      topics,
			Logger:      log,
			Auth:        ka,
			ReaderGroup: group,
			// One user's process: several handles only multiply
			// threads (15 with one, 50 with the default 8) and slow
			// its exit (Close 152 ms against 400).
			Producers: 1,
		})
		if err != nil {
			return nil, err
		}
	}
	var key ed25519.PrivateKey
	if withKafka {
		if key, err = signingKey(c, id); err != nil {
			if env.kafka != nil {
				env.kafka.Close()
			}
			return nil, err
		}
	}
	env.w, err = client.New(id, client.Config{
		ZooKeeper:      c.String("zookeeper"),
		SessionTimeout: c.Duration("session-timeout"),
		RequestTimeout: c.Duration("timeout"),
		// One session per process: afford the buffers to list thousands.
		ZKBufferSize: zookeeper.LargeZKBuffer,
		Kafka:        env.kafka,
		Logger:       log,
		Auth:         za,
		SigningKey:   key,
	})
	if err != nil {
		if env.kafka != nil {
			env.kafka.Close()
		}
		return nil, usageError{err}
	}
	return env, nil
}

// workerKafkaAuth is the Kafka credential of a CLI worker of id, and the
// group its reader names ("": the shared one). ZKCHAT_KAFKA_AUTH or
// --kafka-auth-file, when set, win: zkchat's own processes use them, and
// they override. Else, with ZooKeeper credentials, the user's own
// principal, from /registry/<id>/kafka, which the manager writes with
// --kafka-user-principals and only the id's bound identity may read; its
// ACLs allow only the id's own group, so the reader names that. Else none.
func workerKafkaAuth(c *cli.Context, id string, za *protocol.Auth, topics protocol.Topics, log *slog.Logger) (*kafka.Auth, string, error) {
	ka, err := kafkaAuth(c)
	if err != nil || ka != nil || za == nil {
		return ka, "", err
	}
	s, err := zookeeper.Dial(c.Context, zookeeper.SessionConfig{Connect: c.String("zookeeper"),
		SessionTimeout: c.Duration("session-timeout"), Auth: za, Logger: log})
	if err != nil {
		return nil, "", err
	}
	defer s.Close()
	data, _, err := s.Get(c.Context, s.Paths.KafkaCredential(id))
	switch {
	case errors.Is(err, zk.ErrNoNode), errors.Is(err, zk.ErrNoAuth):
		// No per-user principal (not on, registered before, or not ours:
		// the registration's identity is another): connect as before.
		log.Debug("no Kafka credential of the user's own", "id", id, "err", err)
		return nil, "", nil
	case err != nil:
		return nil, "", fmt.Errorf("Kafka credential of %s: %w", id, err)
	}
	cred, err := protocol.ParseKafkaCredential(data)
	if err != nil {
		return nil, "", fmt.Errorf("Kafka credential of %s: %w", id, err)
	}
	return &kafka.Auth{Auth: protocol.Auth{User: cred.User, Password: cred.Password}, Mechanism: cred.Mechanism,
		SecurityProtocol: os.Getenv(kafka.EnvSecurityProtocol)}, topics.Group(id), nil
}

// onlineWorker is newWorker with Kafka, gone online; close ends both.
func onlineWorker(c *cli.Context, id string) (*workerEnv, error) {
	env, err := newWorker(c, id, true)
	if err != nil {
		return nil, err
	}
	if err := env.w.GoOnline(c.Context); err != nil {
		env.close()
		return nil, err
	}
	return env, nil
}

func registerCommand() *cli.Command {
	cmd := requestCommand("registered %s\n", "%s was already registered\n",
		func(w *client.Worker, ctx context.Context) (protocol.Status, error) { return w.Register(ctx) })
	cmd.Name = "register"
	cmd.Usage = "register a user (asks the manager through /request/enroll)"
	cmd.Description = "ID is 1 to 64 characters of a-z, 0-9, - and _, not starting with - or _.\n" +
		"Registering an id that is registered already succeeds."
	return cmd
}

func unregisterCommand() *cli.Command {
	cmd := requestCommand("unregistered %s\n", "%s was not registered\n",
		func(w *client.Worker, ctx context.Context) (protocol.Status, error) { return w.Quit(ctx) })
	cmd.Name = "unregister"
	cmd.Usage = "unregister a user and delete its topic (the spec's Quit, through /request/quit)"
	cmd.Description = "Unregistering an id that is not registered succeeds."
	return cmd
}

// requestCommand is a command that makes one request of the manager for
// its ID and says which of the two successes it got.
func requestCommand(done, already string, request func(*client.Worker, context.Context) (protocol.Status, error)) *cli.Command {
	return &cli.Command{
		ArgsUsage: "ID",
		Action: func(c *cli.Context) error {
			id, err := oneArg(c, "ID")
			if err != nil {
				return err
			}
			env, err := newWorker(c, id, false)
			if err != nil {
				return err
			}
			defer env.close()
			st, err := request(env.w, c.Context)
			if err != nil {
				return err
			}
			if st == protocol.StatusAlready {
				fmt.Fprintf(c.App.Writer, already, id)
			} else {
				fmt.Fprintf(c.App.Writer, done, id)
			}
			return nil
		},
	}
}

func usersCommand() *cli.Command {
	return &cli.Command{
		Name:  "users",
		Usage: "list registered users, one per line (--online: users online now)",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "online", Usage: "list the users online now"}},
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return usagef("users: takes no arguments")
			}
			// Listing is a read under no id: a plain session, not a worker.
			if _, err := logger(c, slog.LevelError); err != nil {
				return err
			}
			if _, _, err := protocol.SplitConnect(c.String("zookeeper")); err != nil {
				return usageError{err}
			}
			s, err := listingSession(c, false)
			if err != nil {
				return err
			}
			defer s.Close()
			list := s.RegisteredUsers
			if c.Bool("online") {
				list = s.OnlineUsers
			}
			ids, err := list(c.Context)
			if err != nil {
				return err
			}
			for _, id := range ids {
				fmt.Fprintln(c.App.Writer, id)
			}
			return nil
		},
	}
}

func sendCommand() *cli.Command {
	return &cli.Command{
		Name:      "send",
		Usage:     "go online as --from, send TEXT to --to, wait for Kafka's acknowledgement, go offline",
		ArgsUsage: "TEXT...",
		Description: "The words of TEXT are joined with spaces, at most " + strconv.Itoa(protocol.MaxMessageBytes) + " bytes of UTF-8.\n" +
			"Both users must be online while sending: --from is for the duration of the\n" +
			"command, --to must be.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "from", Required: true, Usage: "sender `ID`"},
			&cli.StringFlag{Name: "to", Required: true, Usage: "receiver `ID`"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return usagef("send: no TEXT")
			}
			text := strings.Join(c.Args().Slice(), " ")
			if !utf8.ValidString(text) {
				return usagef("send: TEXT is not valid UTF-8")
			}
			if err := protocol.CheckMessage(text); err != nil { // before any server is called
				return usageError{fmt.Errorf("send: %w", err)}
			}
			if err := protocol.ValidateID(c.String("to")); err != nil {
				return fmt.Errorf("--to: %w", err)
			}
			env, err := onlineWorker(c, c.String("from"))
			if err != nil {
				return err
			}
			defer env.close()
			if err := env.w.SendMessage(c.Context, c.String("to"), text); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "sent to %s\n", c.String("to"))
			return nil
		},
	}
}

func readCommand() *cli.Command {
	return &cli.Command{
		Name:      "read",
		Usage:     "go online as ID, print unread messages as `sender: text`, commit, go offline",
		ArgsUsage: "ID",
		Description: "Control characters are shown as \\xNN, a sender that is not a valid id\n" +
			"in quotes, escaped; a text over " + strconv.Itoa(protocol.MaxMessageBytes) + " bytes (from another producer) is cut,\n" +
			"with a note of its length.",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "follow", Aliases: []string{"f"},
			Usage: "keep printing new messages until interrupted"}},
		Action: func(c *cli.Context) error {
			id, err := oneArg(c, "ID")
			if err != nil {
				return err
			}
			env, err := onlineWorker(c, id)
			if err != nil {
				return err
			}
			defer env.close()
			out := c.App.Writer
			print := func(m protocol.Message) error {
				_, err := fmt.Fprintln(out, showMessage(m))
				return err
			}
			if c.Bool("follow") {
				return env.w.FollowMessages(c.Context, print)
			}
			_, err = env.w.ReadMessages(c.Context, print)
			return err
		},
	}
}

func chatCommand() *cli.Command {
	return &cli.Command{
		Name:      "chat",
		Usage:     "interactive chat as ID: prints incoming messages, sends lines `to: text`",
		ArgsUsage: "ID",
		Description: "Online while it runs. Input lines:\n" +
			"   bob: hello there   send \"hello there\" to bob\n" +
			"   /who               list online users\n" +
			"   /users             list registered users\n" +
			"   /quit              leave (so does end of input or Ctrl-C)\n" +
			"A line that fails (receiver offline, ...) prints an error and the chat goes on.",
		Action: func(c *cli.Context) error {
			id, err := oneArg(c, "ID")
			if err != nil {
				return err
			}
			env, err := onlineWorker(c, id)
			if err != nil {
				return err
			}
			defer env.close()
			return chat(c.Context, env.w, c.App.Reader, c.App.Writer, c.App.ErrWriter)
		},
	}
}

// chatUI is what chat writes: every line with the time, incoming messages
// as "[15:04:05] from bob: hi", sent ones as "[15:04:05] sent to bob: hi"
// once Kafka took them, so the two never look alike. Interactive (input
// and output are terminals), a prompt "alice> " follows each write; a line
// written while the user types clears the prompt's line first (the typed
// text stays in the terminal's line buffer). Piped, there is no prompt and
// no escape sequence. Its methods may be called from several goroutines.
type chatUI struct {
	mu          sync.Mutex
	out, errOut io.Writer
	prompt      string // "" when not interactive
	now         func() time.Time
}

func (u *chatUI) write(dst io.Writer, at time.Time, format string, args ...any) {
	u.mu.Lock()
	defer u.mu.Unlock()
	line := fmt.Sprintf(format, args...)
	if !at.IsZero() {
		line = "[" + at.Format("15:04:05") + "] " + line
	}
	if u.prompt != "" {
		fmt.Fprint(u.out, "\r\x1b[K") // the prompt's line
	}
	fmt.Fprintln(dst, line)
	if u.prompt != "" {
		fmt.Fprint(u.out, u.prompt)
	}
}

func (u *chatUI) incoming(m protocol.Message) {
	at := m.Time
	if at.IsZero() {
		at = u.now()
	}
	u.write(u.out, at.Local(), "from %s", showMessage(m))
}

func (u *chatUI) sent(to, text string) {
	u.write(u.out, u.now(), "sent to %s: %s", to, protocol.ShowText(text, "\t"))
}

func (u *chatUI) info(format string, args ...any) { u.write(u.out, time.Time{}, format, args...) }

func (u *chatUI) fail(err error) { u.write(u.errOut, time.Time{}, "zkchat: %s", oneLine(err)) }

// interactive reports whether in and out are both terminals.
func interactive(in io.Reader, out io.Writer) bool {
	isTTY := func(x any) bool {
		f, ok := x.(*os.File)
		if !ok {
			return false
		}
		st, err := f.Stat()
		return err == nil && st.Mode()&os.ModeCharDevice != 0
	}
	return isTTY(in) && isTTY(out)
}

// chatHelp is chat's /help.
var chatHelp = []string{
	"bob: hello there   send \"hello there\" to bob (once Kafka has it: [time] sent to bob: ...)",
	"/who               users online now",
	"/users             registered users",
	"/help              this",
	"/quit              leave (so does Ctrl-D or Ctrl-C)",
	"Messages to you: [time] from <sender>: <text>",
}

// chat runs the interactive loop until input ends, /quit, or ctx ends.
func chat(ctx context.Context, w *client.Worker, in io.Reader, out, errOut io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ui := &chatUI{out: out, errOut: errOut, now: time.Now}
	if interactive(in, out) {
		ui.prompt = w.ID() + "> "
	}
	ui.info("online as %s; type `to: text` to send, /help for commands", w.ID())
	readErr := make(chan error, 1)
	go func() {
		readErr <- w.FollowMessages(ctx, func(m protocol.Message) error {
			ui.incoming(m)
			return nil
		})
	}()
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(in)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return <-readErr
		case err := <-readErr:
			return fmt.Errorf("chat %s: reading stopped: %w", w.ID(), err)
		case line, ok := <-lines:
			if !ok {
				cancel()
				return <-readErr
			}
			if err := chatLine(ctx, w, line, ui); err != nil {
				if errors.Is(err, errQuit) {
					cancel()
					return <-readErr
				}
				ui.fail(err)
			}
		}
	}
}

var errQuit = errors.New("quit")

// chatLine acts on one input line.
func chatLine(ctx context.Context, w *client.Worker, line string, ui *chatUI) error {
	line = strings.TrimSpace(line)
	switch line {
	case "":
		if ui.prompt != "" {
			ui.mu.Lock()
			fmt.Fprint(ui.out, ui.prompt)
			ui.mu.Unlock()
		}
		return nil
	case "/quit", "/exit":
		return errQuit
	case "/help", "/?":
		for _, l := range chatHelp {
			ui.info("%s", l)
		}
		return nil
	case "/who", "/users":
		list := w.GetOnlineUsers
		if line == "/users" {
			list = w.GetRegisteredUsers
		}
		ids, err := list(ctx)
		if err != nil {
			return err
		}
		ui.info("%s: %s", line[1:], strings.Join(ids, " "))
		return nil
	}
	if strings.HasPrefix(line, "/") {
		cmd, _, _ := strings.Cut(line, " ")
		return fmt.Errorf("unknown command %s: type /help", cmd)
	}
	to, text, ok := strings.Cut(line, ":")
	to, text = strings.TrimSpace(to), strings.TrimSpace(text)
	if !ok || to == "" || text == "" {
		return fmt.Errorf("cannot read %q: write `to: text` (/help for more)", line)
	}
	if !utf8.ValidString(text) {
		return errors.New("text is not valid UTF-8: not sent")
	}
	if err := w.SendMessage(ctx, to, text); err != nil {
		return err
	}
	ui.sent(to, text)
	return nil
}

// showMessage is how the CLI prints a message, `sender: text`: the
// sender by protocol.ShowSender, the text by protocol.ShowText (control
// characters but tab escaped as \xNN, cut after protocol.MaxMessageBytes
// with a marker). Both come from a record any producer may have written:
// neither may drive the terminal (ESC sequences), end the line (CR, LF),
// or pass for another sender ("bob: hi" as a key); a record of a megabyte
// is not a megabyte on the screen.
func showMessage(m protocol.Message) string {
	return protocol.ShowSender(m.From) + trustFlag(m.Trust) + ": " + protocol.ShowText(m.Text, "\t")
}

// trustFlag marks a line whose sender nothing vouches for (protocol.Trust):
// "" when the signature checks out with the sender's registered key.
func trustFlag(t protocol.Trust) string {
	switch t {
	case protocol.Verified:
		return ""
	case protocol.NoKey:
		return " [no key]"
	case protocol.Forged:
		return " [bad signature]"
	}
	return " [unsigned]"
}

// signingKey is id's key from --key-dir, made if missing (nil with
// --key-dir none).
func signingKey(c *cli.Context, id string) (ed25519.PrivateKey, error) {
	dir, err := keyDirOf(c)
	if err != nil || dir == "" {
		return nil, err
	}
	return client.LoadOrCreateKey(dir, id)
}

// keyDirOf is --key-dir: "" for none.
func keyDirOf(c *cli.Context) (string, error) {
	switch dir := c.String("key-dir"); dir {
	case "none":
		return "", nil
	case "":
		return client.DefaultKeyDir()
	default:
		return dir, nil
	}
}

// listingSession is a ZooKeeper session with large buffers (listings of
// the whole registry), for a one-shot command, after checking that
// ZooKeeper (and, withKafka, Kafka) listens at all.
func listingSession(c *cli.Context, withKafka bool) (*zookeeper.Session, error) {
	za, err := zkAuth(c)
	if err != nil {
		return nil, err
	}
	if err := reachable(c, withKafka); err != nil {
		return nil, err
	}
	return zookeeper.Dial(c.Context, zookeeper.SessionConfig{Connect: c.String("zookeeper"),
		SessionTimeout: c.Duration("session-timeout"), BufferSize: zookeeper.LargeZKBuffer, Auth: za})
}
