# zkchat — every target installs what it needs (Debian packages, Kafka jars
# with Maven) and runs against real ZooKeeper and Kafka on 127.0.0.1.
# The servers are run by cmd/devenv (internal/servers); ports and folders
# come from the environment (ZKCHAT_DATA_DIR, ZKCHAT_ZK_PORT, ...).
# ARGS passes flags on: make test ARGS='-run TestSend -v'.
.PHONY: run test reliability build servers-start servers-stop servers-status bench bench-bridge bench-scale bench-hops bench-puppets bench-kafka clean deps-go devenv check graph stats doccheck

# The official Go tarball's place, often not on PATH; confluent-kafka-go is cgo.
export PATH := $(PATH):/usr/local/go/bin
export CGO_ENABLED := 1
STATICCHECK_VERSION := v0.8.2
GOBIN_DIR = $(or $(shell go env GOBIN),$(shell go env GOPATH)/bin)
# Built once per make run (go caches it): a binary receives signals itself,
# unlike go run.
DEVENV := .cache/devenv

## run: start ZooKeeper, Kafka and InspIRCd and the IRC bridge; print how to chat (Ctrl-C stops all)
run: devenv
	$(DEVENV) run $(ARGS)

## test: gofmt, go vet, staticcheck, go test -race ./... against real servers (not the fault suite)
test: check devenv
	ZKCHAT_TEST_STRICT=1 $(DEVENV) exec -- go test -race -count=1 -parallel 4 -timeout 20m $(ARGS) ./...

## reliability: the fault suite alone (3 ZooKeeper + 3 Kafka, faults injected; doc/reliability.md)
reliability: devenv
	scripts/install-deps.sh irc
	ZKCHAT_TEST_RUN_STOP=1 go test -count=1 -timeout 15m -run TestRunStops ./cmd/devenv/
	$(DEVENV) reliability $(ARGS)

## check: the docs (doccheck), gofmt, go vet and staticcheck (installed into GOBIN when missing)
check: deps-go doccheck
	@bad=$$(gofmt -l $$(git ls-files '*.go')); \
		if [ -n "$$bad" ]; then echo "gofmt would change: $$bad (run gofmt -w)"; exit 1; fi
	go vet ./...
	@test -x $(GOBIN_DIR)/staticcheck || go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(GOBIN_DIR)/staticcheck ./...

## doccheck: every path, make target, ZKCHAT_ variable and relative link in README.md and doc/*.md exists
doccheck:
	@scripts/doccheck.sh

## build: the zkchat binary in ./zkchat
build: deps-go
	go build -o zkchat ./cmd/zkchat

deps-go:
	@scripts/install-deps.sh go

devenv: deps-go
	@go build -o $(DEVENV) ./cmd/devenv

## bench: the core benchmarks against real servers (about 2 minutes); tables in doc/benchmarks.md, raw output in .data/bench-core.txt
bench: devenv
	@mkdir -p .data
	$(DEVENV) exec -- sh -c "go test -run '^$$' -bench 'Floor|Register|Send' -benchtime 2000x ./internal/benchmarks/ && go test -run '^$$' -bench FirstMessage -benchtime 200x -timeout 30m ./internal/benchmarks/ && go test -run '^$$' -bench 'Sign' -benchtime 20000x ./protocol/" 2>&1 | tee .data/bench-core.txt
	go run ./internal/benchtab -title 'Benchmarks: core' -cmd 'make bench' -note 'What each benchmark measures and what limits it: [scaling.md](scaling.md).' -o doc/benchmarks.md .data/bench-core.txt

## bench-bridge: the IRC bridge benchmarks (about 5 minutes); tables in doc/benchmarks-bridge.md, raw output in .data/bench-bridge.txt
bench-bridge: devenv
	@mkdir -p .data
	$(DEVENV) exec -- sh -c "go test -run '^$$' -bench 'IRCDirectFloor|BridgeLatency|BridgeThroughput' -benchtime 10s -timeout 30m ./bridge/ && go test -run '^$$' -bench BridgeMemory -benchtime 1x -timeout 30m ./bridge/" 2>&1 | tee .data/bench-bridge.txt
	go run ./internal/benchtab -title 'Benchmarks: IRC bridge' -cmd 'make bench-bridge' -split -note 'What each benchmark measures and what limits it: [scaling.md](scaling.md).' -o doc/benchmarks-bridge.md .data/bench-bridge.txt

## bench-scale: the IRC bridge at community scale (10, 1,000 and 10,000 online at 1,000 msgs/s; throughput; memory and idle CPU at 1,000 and 10,000; about 15 minutes); tables in doc/benchmarks-bridge-scale.md, raw output in .data/bench-scale.txt
bench-scale: devenv
	@mkdir -p .data
	$(DEVENV) exec -- sh -c "ZKCHAT_BENCH_RATES=1000 ZKCHAT_BENCH_ONLINE=10,1000,10000 go test -run '^$$' -bench 'IRCDirectFloor|BridgeLatency|BridgeThroughput' -benchtime 10s -timeout 60m ./bridge/ && ZKCHAT_BENCH_MEMORY_ONLINE=1000,10000 go test -run '^$$' -bench BridgeMemory -benchtime 1x -timeout 60m ./bridge/" 2>&1 | tee .data/bench-scale.txt
	go run ./internal/benchtab -title 'Benchmarks: IRC bridge at community scale' -cmd 'make bench-scale' -split -note 'Idle users JOIN at ZKCHAT_BENCH_JOIN_RATE (500) a second, in a channel with mode +u (auditorium); targets and what each benchmark measures: [scaling.md](scaling.md).' -o doc/benchmarks-bridge-scale.md .data/bench-scale.txt

## bench-hops: where a message's time goes on its way through the bridge (each hop's p50/p99, and the slowest 1 %'s mean per hop; 10, 1,000 and 10,000 online at 1,000 msgs/s; about 8 minutes); tables in doc/benchmarks-bridge-hops.md
bench-hops: devenv
	@mkdir -p .data
	$(DEVENV) exec -- sh -c "ZKCHAT_BENCH_HOPS=1 ZKCHAT_BENCH_RATES=1000 ZKCHAT_BENCH_ONLINE=10,1000,10000 go test -run '^$$' -bench 'IRCDirectFloor|BridgeLatency' -benchtime 10s -timeout 60m ./bridge/" 2>&1 | tee .data/bench-hops.txt
	go run ./internal/benchtab -title 'Benchmarks: the hops of a message through the bridge' -cmd 'make bench-hops' -split -note 'Hops (bridge/bench_test.go, bbHops): in = sender write to the bridge IRC handler; queue = to the start of the send in the user goroutine; kafka = to the receiver delivery; deliver = to the outbox handing the line to girc; out = to the receiver read; ack = start of the send to Kafka acknowledgement (overlaps kafka). tail-*: the mean of each hop over the slowest 1 %. Analysis: [scaling.md](scaling.md).' -o doc/benchmarks-bridge-hops.md .data/bench-hops.txt

## bench-puppets: what a puppet (a CLI user shown as an IRC nick) costs the bridge's process, against a bare girc client as the floor (about 1 minute); table in doc/benchmarks-puppets.md
bench-puppets: devenv
	@mkdir -p .data
	$(DEVENV) exec -- sh -c "go test -run '^$$' -bench Puppets -benchtime 1x -count 3 ./bridge/" 2>&1 | tee .data/bench-puppets.txt
	go run ./internal/benchtab -title 'Benchmarks: puppets' -cmd 'make bench-puppets' -note '50 users online through the CLI, each shown as an IRC nick by a client connection of its own (bridge/puppet.go); floor-*: the same number of bare girc clients on the same server, in the same run. Per puppet: the goroutines and the Go heap (after GC) that the process gets back when they all quit. all-on-irc-ms: from the 50 /online nodes made to all 50 nicks answering ISON.' -o doc/benchmarks-puppets.md .data/bench-puppets.txt

## bench-kafka: topic creation, produce throughput per producer handle, idle readers per consumer shard (private broker, 1 GB heap; about 10 minutes); tables in doc/benchmarks-kafka.md
bench-kafka: devenv
	@mkdir -p .data
	$(DEVENV) exec -- sh -c "go test -run '^$$' -bench CreateTopic -benchtime 400x -timeout 20m ./kafka/ && go test -run '^$$' -bench ScaleProduce -benchtime 100000x -timeout 30m ./kafka/ && ZKCHAT_SCALE_IDLE_TOPICS=1000,5000 ZKCHAT_SCALE_IDLE=none,all/50ms,250/500ms go test -run '^$$' -bench ScaleIdle -benchtime 1x -timeout 60m ./kafka/" 2>&1 | tee .data/bench-kafka.txt
	go run ./internal/benchtab -title 'Benchmarks: Kafka clients at scale' -cmd 'make bench-kafka' -split -note 'What each benchmark measures: [scaling.md](scaling.md#kafka-kafkatopicbatch_testgo-kafkascale_bench_testgo).' -o doc/benchmarks-kafka.md .data/bench-kafka.txt

## servers-start, servers-stop, servers-status: the local servers, whoever started them
servers-start: devenv
	$(DEVENV) start

servers-stop: devenv
	$(DEVENV) stop

servers-status: devenv
	$(DEVENV) status

clean: devenv
	$(DEVENV) stop
	rm -rf .data zkchat

## graph: the import graph between zkchat's packages (doc/architecture.md)
graph:
	@go list -f '{{.ImportPath}}{{range .Imports}} {{.}}{{end}}' ./... | awk '{ p = $$1; sub("github.com/zkchat/zkchat/", "", p); out = ""; for (i = 2; i <= NF; i++) if ($$i ~ /^github.com\/zkchat\/zkchat\//) { d = $$i; sub("github.com/zkchat/zkchat/", "", d); out = out " " d } print p " ->" out }'

## stats: lines per package, the longest functions and lines of shell (go run ./internal/codestats DIR for another checkout)
stats:
	@go run ./internal/codestats .
