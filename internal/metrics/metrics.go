// Package metrics serves what a running zkchat process says about itself
// to operators: Prometheus metrics (/metrics, with the official client
// library), liveness (/healthz) and readiness (/readyz), on one opt-in
// listener (zkchat manager|bridge --metrics-addr).
//
// The domain packages do not import Prometheus: the bridge and the manager
// keep their own counters and report them in a Stats snapshot, which the
// collectors here read at each scrape (so a scrape costs a few locks, and
// nothing is counted twice). Names follow Prometheus conventions
// (zkchat_<subsystem>_<name>, _total for counters, _seconds for
// durations); label values come from fixed sets, never user ids.
package metrics

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/zkchat/zkchat/bridge"
	"github.com/zkchat/zkchat/manager"
)

// Check is one readiness condition: ok, or why not.
type Check func() (ok bool, why string)

// Server is the metrics and health handler of one process (cmd/zkchat
// serves it on --metrics-addr).
type Server struct {
	reg    *prometheus.Registry
	checks map[string]Check
}

// New makes a Server for a process of version; its registry has Go's and
// the process's collectors and zkchat_build_info.
func New(version string) *Server {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	info := prometheus.NewGauge(prometheus.GaugeOpts{Name: "zkchat_build_info",
		Help: "Always 1; the version label is zkchat's.", ConstLabels: prometheus.Labels{"version": version}})
	info.Set(1)
	reg.MustRegister(info)
	return &Server{reg: reg, checks: map[string]Check{}}
}

// Ready adds a readiness condition named name (/readyz lists them).
func (s *Server) Ready(name string, c Check) { s.checks[name] = c }

// Registry is the server's registry, for tests and extra collectors.
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// AddBridge registers the bridge's collector and its readiness.
func (s *Server) AddBridge(b *bridge.Bridge) {
	s.reg.MustRegister(&bridgeCollector{b: b})
	s.Ready("irc", b.Ready)
}

// AddManager registers the manager's collector. Readiness asks only that
// some manager leads: a follower is ready (it stands by).
func (s *Server) AddManager(m *manager.Manager) {
	s.reg.MustRegister(&managerCollector{m: m})
}

// Handler serves /metrics, /healthz and /readyz.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{Registry: s.reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		var missing []string
		for name, c := range s.checks {
			if ok, why := c(); !ok {
				missing = append(missing, name+": "+why)
			}
		}
		if len(missing) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprintln(w, "not ready: "+strings.Join(missing, "; "))
			return
		}
		_, _ = fmt.Fprintln(w, "ready")
	})
	return mux
}

// Names are the zkchat_ metric families the collectors export (a
// histogram's series add _bucket, _sum and _count), besides
// zkchat_build_info: the dashboard's test checks against them.
func Names() []string {
	return append([]string{"zkchat_build_info"}, descNames...)
}

var (
	descIRCUp       = prometheus.NewDesc("zkchat_bridge_irc_connected", "1 while the bot is connected, in its channel, member list read.", nil, nil)
	descZKUp        = prometheus.NewDesc("zkchat_bridge_zookeeper_connected", "1 while the bridge's ZooKeeper session is up.", nil, nil)
	descOnline      = prometheus.NewDesc("zkchat_bridge_users_online", "Users online through this bridge.", nil, nil)
	descPuppets     = prometheus.NewDesc("zkchat_bridge_puppets", "Puppets (users of other front ends shown as IRC nicks) connected.", nil, nil)
	descOutbox      = prometheus.NewDesc("zkchat_bridge_outbox_lines", "Lines waiting in the bot's outbox (deliveries, proofs, replies).", nil, nil)
	descSent        = prometheus.NewDesc("zkchat_bridge_messages_sent_total", "Messages IRC users sent, acknowledged by Kafka.", nil, nil)
	descFailed      = prometheus.NewDesc("zkchat_bridge_messages_failed_total", "Messages IRC users sent that were not sent, by reason.", []string{"reason"}, nil)
	descDelivered   = prometheus.NewDesc("zkchat_bridge_messages_delivered_total", "Messages delivered to IRC and proved read by the server.", nil, nil)
	descRedelivered = prometheus.NewDesc("zkchat_bridge_deliveries_unproved_total", "Deliveries that stopped before the server proved their last lines; those messages come again.", nil, nil)
	descLatency     = prometheus.NewDesc("zkchat_bridge_delivery_latency_seconds", "From a message's Kafka timestamp to the IRC server's proof that it read the delivered lines.", nil, nil)

	descLeading    = prometheus.NewDesc("zkchat_manager_leader", "1 while this manager leads.", nil, nil)
	descTerms      = prometheus.NewDesc("zkchat_manager_terms_total", "Terms this manager has led.", nil, nil)
	descPending    = prometheus.NewDesc("zkchat_manager_requests_pending", "Requests the leader has listed and not yet seen answered and gone, by kind (0 on followers).", []string{"kind"}, nil)
	descAnswered   = prometheus.NewDesc("zkchat_manager_requests_answered_total", "Requests this manager answered, by kind and status.", []string{"kind", "status"}, nil)
	descRegistered = prometheus.NewDesc("zkchat_registered_users", "Registered users (/registry), read at the scrape; absent when ZooKeeper did not answer in 2 s.", nil, nil)

	descNames = []string{"zkchat_bridge_irc_connected", "zkchat_bridge_zookeeper_connected", "zkchat_bridge_users_online", "zkchat_bridge_puppets", "zkchat_bridge_outbox_lines", "zkchat_bridge_messages_sent_total", "zkchat_bridge_messages_failed_total", "zkchat_bridge_messages_delivered_total", "zkchat_bridge_deliveries_unproved_total", "zkchat_bridge_delivery_latency_seconds", "zkchat_manager_leader", "zkchat_manager_terms_total", "zkchat_manager_requests_pending", "zkchat_manager_requests_answered_total", "zkchat_registered_users"}
)

// bridgeCollector reads bridge.Stats at each scrape.
type bridgeCollector struct{ b *bridge.Bridge }

func (c *bridgeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descIRCUp, descZKUp, descOnline, descPuppets, descOutbox, descSent, descFailed, descDelivered, descRedelivered, descLatency} {
		ch <- d
	}
}

func (c *bridgeCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.b.Stats()
	ch <- prometheus.MustNewConstMetric(descIRCUp, prometheus.GaugeValue, b2f(st.IRCConnected))
	ch <- prometheus.MustNewConstMetric(descZKUp, prometheus.GaugeValue, b2f(st.ZooKeeperConnected))
	ch <- prometheus.MustNewConstMetric(descOnline, prometheus.GaugeValue, float64(st.Online))
	ch <- prometheus.MustNewConstMetric(descPuppets, prometheus.GaugeValue, float64(st.Puppets))
	ch <- prometheus.MustNewConstMetric(descOutbox, prometheus.GaugeValue, float64(st.OutboxLines))
	ch <- prometheus.MustNewConstMetric(descSent, prometheus.CounterValue, float64(st.Sent))
	for _, r := range bridge.SendFailReasons {
		ch <- prometheus.MustNewConstMetric(descFailed, prometheus.CounterValue, float64(st.SendFailed[r]), r)
	}
	ch <- prometheus.MustNewConstMetric(descDelivered, prometheus.CounterValue, float64(st.Delivered))
	ch <- prometheus.MustNewConstMetric(descRedelivered, prometheus.CounterValue, float64(st.Redelivered))
	buckets := make(map[float64]uint64, len(bridge.LatencyBuckets))
	for i, le := range bridge.LatencyBuckets {
		buckets[le] = st.LatencyCounts[i]
	}
	ch <- prometheus.MustNewConstHistogram(descLatency, st.LatencyCount, st.LatencySum, buckets)
}

// managerCollector reads manager.Stats at each scrape.
type managerCollector struct{ m *manager.Manager }

func (c *managerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLeading, descTerms, descPending, descAnswered, descRegistered} {
		ch <- d
	}
}

func (c *managerCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.m.Stats()
	ch <- prometheus.MustNewConstMetric(descLeading, prometheus.GaugeValue, b2f(st.Leading))
	ch <- prometheus.MustNewConstMetric(descTerms, prometheus.CounterValue, float64(st.Terms))
	if st.Registered >= 0 {
		ch <- prometheus.MustNewConstMetric(descRegistered, prometheus.GaugeValue, float64(st.Registered))
	}
	for kind, n := range st.Pending {
		ch <- prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, float64(n), kind)
	}
	for key, n := range st.Answered {
		kind, status, _ := strings.Cut(key, "/")
		ch <- prometheus.MustNewConstMetric(descAnswered, prometheus.CounterValue, float64(n), kind, status)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
