package reliability

import (
	"log/slog"
	"os"
	"testing"

	"github.com/zkchat/zkchat/internal/testenv"
)

// quietLogger logs the in-process workers' warnings and errors to the test
// log (debug lines too with ZKCHAT_RELIABILITY_DEBUG=1): a fault suite makes
// thousands of expected retries, and the processes' own logs are on disk.
func quietLogger(t testing.TB) *slog.Logger {
	if os.Getenv("ZKCHAT_RELIABILITY_DEBUG") == "1" {
		return testenv.Logger(t)
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
