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
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/zkchat/zkchat/bridge"
	"github.com/zkchat/zkchat/kafka"
	"github.com/zkchat/zkchat/manager"
	"github.com/zkchat/zkchat/zookeeper"
)

// Check is one readiness condition: ok, or why not.
type Check func() (ok bool, why string)

// Server is the metrics and health handler of one process (cmd/zkchat
// serves it on --metrics-addr).
type Server struct {
	reg    *prometheus.Registry
	checks map[string]Check
	c      *collector // registered by New; AddBridge and AddManager fill it
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
	c := &collector{}
	reg.MustRegister(c)
	return &Server{reg: reg, checks: map[string]Check{}, c: c}
}

// AddCheck adds a readiness condition named name (Ready lists them).
func (s *Server) AddCheck(name string, c Check) { s.checks[name] = c }

// Ready runs every readiness condition: "ready", or "not ready: " and
// what each failing one says, by name (/readyz, and systemd's STATUS).
func (s *Server) Ready() (ok bool, why string) {
	names := slices.Sorted(maps.Keys(s.checks))
	var missing []string
	for _, name := range names {
		if ok, why := s.checks[name](); !ok {
			missing = append(missing, name+": "+why)
		}
	}
	if len(missing) > 0 {
		return false, "not ready: " + strings.Join(missing, "; ")
	}
	return true, "ready"
}

// Registry is the server's registry, for tests and extra collectors.
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// AddBridge adds the bridge's metrics and its readiness. Before Handler
// serves: the collector reads the field unlocked.
func (s *Server) AddBridge(b *bridge.Bridge) {
	s.c.b = b
	s.AddCheck("bridge", b.Ready)
}

// AddManager adds the manager's metrics and its readiness (a follower is
// ready: it stands by). Before Handler serves.
func (s *Server) AddManager(m *manager.Manager) {
	s.c.m = m
	s.AddCheck("manager", m.Ready)
}

// Handler serves /metrics, /healthz and /readyz.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{Registry: s.reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		ok, why := s.Ready()
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_, _ = fmt.Fprintln(w, why)
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
	descOldest     = prometheus.NewDesc("zkchat_manager_request_oldest_pending_seconds", "By kind, how long ago the leader first listed its oldest pending request (0: none pending, or not leading).", []string{"kind"}, nil)

	// The bridge's and the manager's clients, by client="bridge"|"manager".
	descZKUp        = prometheus.NewDesc("zkchat_zookeeper_connected", "1 while the client's ZooKeeper session is up (the bridge's, the manager's election session).", []string{"client"}, nil)
	descZKEvents    = prometheus.NewDesc("zkchat_zookeeper_session_events_total", "ZooKeeper session events: disconnected (the session may come back on another server), expired (its ephemeral nodes are gone).", []string{"client", "event"}, nil)
	descKafkaUp     = prometheus.NewDesc("zkchat_kafka_connected", "1 if a Kafka broker answered a metadata request within 2 s at this scrape.", []string{"client"}, nil)
	descKafkaErrors = prometheus.NewDesc("zkchat_kafka_client_errors_total", "Client errors librdkafka reported, by kind (all_brokers_down, transport, authentication, fatal, other).", []string{"client", "kind"}, nil)

	descNames = []string{"zkchat_bridge_irc_connected", "zkchat_bridge_users_online", "zkchat_bridge_puppets", "zkchat_bridge_outbox_lines", "zkchat_bridge_messages_sent_total", "zkchat_bridge_messages_failed_total", "zkchat_bridge_messages_delivered_total", "zkchat_bridge_deliveries_unproved_total", "zkchat_bridge_delivery_latency_seconds", "zkchat_manager_leader", "zkchat_manager_terms_total", "zkchat_manager_requests_pending", "zkchat_manager_requests_answered_total", "zkchat_registered_users", "zkchat_manager_request_oldest_pending_seconds",
		"zkchat_zookeeper_connected", "zkchat_zookeeper_session_events_total", "zkchat_kafka_connected", "zkchat_kafka_client_errors_total"}
)

// collector reads bridge.Stats and manager.Stats at each scrape, of those
// the process runs (a bridge, a manager, or both). One collector for both,
// because the client metrics (zkchat_zookeeper_*, zkchat_kafka_*) are one
// family each, labelled client, and a registry takes a family from one
// collector only.
type collector struct {
	b *bridge.Bridge
	m *manager.Manager
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descIRCUp, descOnline, descPuppets, descOutbox, descSent, descFailed, descDelivered, descRedelivered, descLatency,
		descLeading, descTerms, descPending, descAnswered, descRegistered, descOldest,
		descZKUp, descZKEvents, descKafkaUp, descKafkaErrors} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	if c.b != nil {
		c.collectBridge(ch)
	}
	if c.m != nil {
		c.collectManager(ch)
	}
}

func (c *collector) collectBridge(ch chan<- prometheus.Metric) {
	st := c.b.Stats()
	ch <- prometheus.MustNewConstMetric(descIRCUp, prometheus.GaugeValue, b2f(st.IRCConnected))
	clients(ch, "bridge", st.ZooKeeperConnected, st.ZooKeeperEvents, st.KafkaConnected, st.KafkaErrors)
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

func (c *collector) collectManager(ch chan<- prometheus.Metric) {
	st := c.m.Stats()
	ch <- prometheus.MustNewConstMetric(descLeading, prometheus.GaugeValue, b2f(st.Leading))
	ch <- prometheus.MustNewConstMetric(descTerms, prometheus.CounterValue, float64(st.Terms))
	if st.Registered >= 0 {
		ch <- prometheus.MustNewConstMetric(descRegistered, prometheus.GaugeValue, float64(st.Registered))
	}
	for kind, n := range st.Pending {
		ch <- prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, float64(n), kind)
	}
	for kind, d := range st.OldestPending {
		ch <- prometheus.MustNewConstMetric(descOldest, prometheus.GaugeValue, d.Seconds(), kind)
	}
	clients(ch, "manager", st.ZooKeeperConnected, st.ZooKeeperEvents, st.KafkaConnected, st.KafkaErrors)
	for key, n := range st.Answered {
		kind, status, _ := strings.Cut(key, "/")
		ch <- prometheus.MustNewConstMetric(descAnswered, prometheus.CounterValue, float64(n), kind, status)
	}
}

// clients sends the connection metrics of one process's ZooKeeper and
// Kafka clients, labelled client.
func clients(ch chan<- prometheus.Metric, client string, zkUp bool, zkEvents map[string]uint64, kafkaUp bool, kafkaErrors map[string]uint64) {
	ch <- prometheus.MustNewConstMetric(descZKUp, prometheus.GaugeValue, b2f(zkUp), client)
	for _, e := range zookeeper.SessionEventKinds {
		ch <- prometheus.MustNewConstMetric(descZKEvents, prometheus.CounterValue, float64(zkEvents[e]), client, e)
	}
	ch <- prometheus.MustNewConstMetric(descKafkaUp, prometheus.GaugeValue, b2f(kafkaUp), client)
	for _, k := range kafka.ErrorKinds {
		ch <- prometheus.MustNewConstMetric(descKafkaErrors, prometheus.CounterValue, float64(kafkaErrors[k]), client, k)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
