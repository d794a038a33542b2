package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/zkchat/zkchat/internal/metrics"
)

// debugFlag serves Go's profiles for an operator (and the fault suite, which
// reads the goroutine count from /debug/pprof/goroutine?debug=1). Off by
// default; bind it to loopback: profiles show internals.
var debugFlag = &cli.StringFlag{Name: "debug-addr", EnvVars: []string{"ZKCHAT_DEBUG_ADDR"},
	Usage: "serve /debug/pprof/ on `HOST:PORT` (e.g. 127.0.0.1:6060; off when empty)"}

// serveDebug serves /debug/pprof/ on addr until ctx ends; the returned
// function stops it and waits for the server goroutine.
func serveDebug(ctx context.Context, addr string, log *slog.Logger) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return serveHTTP(ctx, "--debug-addr", addr, mux, log)
}

// serveHTTP serves h on addr (the value of flag) until ctx ends or stop is
// called; stop waits for the server's goroutine. A listen error is a usage
// error, returned at once.
func serveHTTP(ctx context.Context, flag, addr string, h http.Handler, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, usageError{fmt.Errorf("%s %s: %w", flag, addr, err)}
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server", "flag", flag, "addr", addr, "err", err)
		}
	}()
	log.Info("listening", "flag", flag, "addr", ln.Addr().String())
	ctx, cancel := context.WithCancel(ctx)
	go func() { <-ctx.Done(); _ = srv.Close() }()
	return func() { cancel(); <-done }, nil
}

// metricsFlag serves Prometheus metrics, /healthz and /readyz
// (internal/metrics).
// A new one for each command: a flag records whether it was set, and
// several runs in one process (tests) must not share that.
func metricsFlag() *cli.StringFlag {
	return &cli.StringFlag{Name: "metrics-addr", EnvVars: []string{"ZKCHAT_METRICS_ADDR"},
		Usage: "serve Prometheus metrics (/metrics), /healthz and /readyz on `HOST:PORT`; off by default"}
}

// serveOps tells operators and the service manager about the process:
// add registers its parts (bridge, manager) with a metrics.Server, served
// on --metrics-addr when set, whose readiness also goes to systemd when
// systemd started the process (notifySystemd). stop stops both and waits.
func serveOps(c *cli.Context, log *slog.Logger, add func(*metrics.Server)) (stop func(), err error) {
	s := metrics.New(version())
	add(s)
	stopHTTP := func() {}
	if addr := c.String("metrics-addr"); addr != "" {
		if stopHTTP, err = serveHTTP(c.Context, "--metrics-addr", addr, s.Handler(), log); err != nil {
			return nil, err
		}
	}
	stopNotify := notifySystemd(c.Context, log, s.Ready)
	return func() { stopNotify(); stopHTTP() }, nil
}
