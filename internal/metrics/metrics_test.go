package metrics

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestNamesMatchDescs: Names lists exactly the families the collectors
// describe.
func TestNamesMatchDescs(t *testing.T) {
	var described []string
	for _, c := range []prometheus.Collector{&collector{}} {
		ch := make(chan *prometheus.Desc, 32)
		c.Describe(ch)
		close(ch)
		for d := range ch {
			m := regexp.MustCompile(`fqName: "([^"]+)"`).FindStringSubmatch(d.String())
			described = append(described, m[1])
		}
	}
	slices.Sort(described)
	names := slices.Clone(descNames)
	slices.Sort(names)
	if !slices.Equal(described, names) {
		t.Fatalf("described %v\nnames     %v", described, names)
	}
}

// TestDashboard: the Grafana dashboard parses, and every zkchat_ series its
// queries name is one the collectors export.
func TestDashboard(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	path := filepath.Join(filepath.Dir(file), "..", "..", "deploy", "grafana", "zkchat.json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	known := map[string]bool{}
	for _, n := range Names() {
		known[n] = true
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if strings.HasSuffix(n, "_seconds") {
				known[n+suf] = true
			}
		}
	}
	series := regexp.MustCompile(`zkchat_[a-z_]+`)
	used := 0
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, s := range series.FindAllString(tg.Expr, -1) {
				used++
				if !known[s] {
					t.Errorf("panel %q: %s is not a zkchat metric (query %q)", p.Title, s, tg.Expr)
				}
			}
		}
	}
	if used == 0 {
		t.Fatal("the dashboard names no zkchat metric")
	}
}

// TestHealthAndReady: /healthz is 200 always; /readyz is 503 with the
// failing checks' reasons, then 200; /metrics serves zkchat_build_info.
func TestHealthAndReady(t *testing.T) {
	s := New("v-test")
	var ready atomic.Bool
	s.AddCheck("bridge", func() (bool, string) { return ready.Load(), "not in the channel" })
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("healthz %d", code)
	}
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "bridge: not in the channel") {
		t.Fatalf("readyz %d %q", code, body)
	}
	ready.Store(true)
	if code, _ := get("/readyz"); code != 200 {
		t.Fatalf("readyz %d once ready", code)
	}
	if _, body := get("/metrics"); !strings.Contains(body, `zkchat_build_info{version="v-test"} 1`) {
		t.Fatalf("metrics lack build info:\n%.500s", body)
	}
}
