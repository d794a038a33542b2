package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/zkchat/zkchat/protocol"
)

// TestChatUI: incoming and sent lines differ and carry the time; on a
// terminal each write clears the prompt's line and shows the prompt again;
// piped, neither a prompt nor an escape sequence.
func TestChatUI(t *testing.T) {
	at := time.Date(2026, 12, 7, 15, 4, 5, 0, time.Local)
	for _, tc := range []struct{ prompt string }{{""}, {"alice> "}} {
		var out bytes.Buffer
		ui := &chatUI{out: &out, errOut: &out, prompt: tc.prompt, now: func() time.Time { return at }}
		ui.incoming(protocol.Message{From: "bob", Text: "hi\x1b[31m", Time: at, Trust: protocol.Verified})
		ui.sent("bob", "hello")
		var want string
		if tc.prompt == "" {
			want = "[15:04:05] from bob: hi\\x1b[31m\n[15:04:05] sent to bob: hello\n"
		} else {
			want = "\r\x1b[K[15:04:05] from bob: hi\\x1b[31m\nalice> \r\x1b[K[15:04:05] sent to bob: hello\nalice> "
		}
		if got := out.String(); got != want {
			t.Errorf("prompt %q: wrote %q, want %q", tc.prompt, got, want)
		}
	}
}
