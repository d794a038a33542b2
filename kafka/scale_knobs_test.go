package kafka_test

import (
	"time"

	"github.com/zkchat/zkchat/kafka"
)

// scaleKnobs are the settings the scale benchmarks compare (zero: the
// default).
type scaleKnobs struct {
	producers int           // Config.Producers
	shard     int           // Config.ReaderShardSize
	wait      time.Duration // Config.FetchWait
}

// applyKnobs sets kn in cfg; false if this version cannot.
func applyKnobs(cfg *kafka.Config, kn scaleKnobs) bool {
	cfg.Producers, cfg.ReaderShardSize, cfg.FetchWait = kn.producers, kn.shard, kn.wait
	return true
}

// shardCount is the number of consumers k reads with.
func shardCount(k *kafka.Clients) int { return k.ReaderShards() }
