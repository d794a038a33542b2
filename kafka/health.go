package kafka

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// The kinds of client errors, indexes into ErrorKinds.
const (
	errAllBrokersDown = iota
	errTransport
	errAuthentication
	errFatal
	errOther
)

// ErrorKinds are the kinds of client errors librdkafka reports (Errors'
// keys, zkchat_kafka_client_errors_total's label values): a fixed set, in
// the order of the constants above.
var ErrorKinds = [...]string{errAllBrokersDown: "all_brokers_down", errTransport: "transport",
	errAuthentication: "authentication", errFatal: "fatal", errOther: "other"}

// errorCounts counts client errors by ErrorKinds index.
type errorCounts [len(ErrorKinds)]atomic.Uint64

func (c *errorCounts) add(e ckafka.Error) {
	i := errOther
	switch {
	case e.IsFatal():
		i = errFatal
	case e.Code() == ckafka.ErrAllBrokersDown:
		i = errAllBrokersDown
	case e.Code() == ckafka.ErrTransport:
		i = errTransport
	case e.Code() == ckafka.ErrAuthentication:
		i = errAuthentication
	}
	c[i].Add(1)
}

func (c *errorCounts) snapshot() map[string]uint64 {
	m := make(map[string]uint64, len(ErrorKinds))
	for i, k := range ErrorKinds {
		m[k] = c[i].Load()
	}
	return m
}

// PingTimeout bounds a Ping whose ctx has no earlier deadline: a scrape or
// a readiness probe must answer within its own timeout.
const PingTimeout = 2 * time.Second

// ping asks a broker for the cluster's brokers (one metadata request, no
// topics), which needs a connection up: librdkafka answers none from
// its cache.
func ping(ctx context.Context, a *ckafka.AdminClient) error {
	ctx, cancel := context.WithTimeout(ctx, PingTimeout)
	defer cancel()
	res, err := a.DescribeCluster(ctx)
	if err != nil {
		return fmt.Errorf("kafka: no broker answered within %s: %w", PingTimeout, err)
	}
	if len(res.Nodes) == 0 {
		return fmt.Errorf("kafka: the cluster listed no brokers")
	}
	return nil
}

// Ping reports whether a broker answers now: nil, or why not (with the
// client's last error, such as a refused authentication). For readiness and
// zkchat_kafka_connected: Kafka has no session to watch, and a producer's
// view of its brokers changes only when it sends.
func (k *Clients) Ping(ctx context.Context) error {
	return k.use(func() error {
		if err := ping(ctx, k.admin); err != nil {
			return k.explain(err)
		}
		return nil
	})
}

// Errors counts the client errors librdkafka reported, by ErrorKinds, since
// the clients were made.
func (k *Clients) Errors() map[string]uint64 { return k.errs.snapshot() }

// Ping: see Clients.Ping.
func (a *Admin) Ping(ctx context.Context) error { return ping(ctx, a.a) }

// Errors: see Clients.Errors.
func (a *Admin) Errors() map[string]uint64 { return a.errs.snapshot() }
