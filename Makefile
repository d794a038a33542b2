# zkchat — every target installs what it needs (Debian packages, Kafka from
# Maven Central) and runs against real ZooKeeper and Kafka on 127.0.0.1.
.PHONY: run test reliability build servers-start servers-stop bench bench-bridge clean graph

## run: start ZooKeeper, Kafka, InspIRCd and the IRC bridge; print how to chat (Ctrl-C stops all)
run:
	scripts/run.sh

## test: gofmt, go vet, go test -race ./... against real servers, then the fault suite
test:
	scripts/test.sh

## reliability: only the fault suite (3 ZooKeeper + 3 Kafka, faults injected; doc/reliability.md)
reliability:
	scripts/reliability.sh

## build: the zkchat binary in ./zkchat
build:
	scripts/install-deps.sh go
	go build -o zkchat ./cmd/zkchat

## bench: the core benchmarks against real servers (about 2 minutes); tables in doc/benchmarks.md, raw output in .data/bench-core.txt
bench:
	@mkdir -p .data
	scripts/with-servers.sh sh -c "go test -run '^$$' -bench 'Floor|Register|Send' -benchtime 2000x ./manager/ && go test -run '^$$' -bench FirstMessage -benchtime 200x -timeout 30m ./manager/" 2>&1 | tee .data/bench-core.txt
	go run ./internal/benchtab -title 'Benchmarks: core' -cmd 'make bench' -note 'What each benchmark measures and what limits it: [scaling.md](scaling.md).' -o doc/benchmarks.md .data/bench-core.txt

## bench-bridge: the IRC bridge benchmarks (about 5 minutes); tables in doc/benchmarks-bridge.md, raw output in .data/bench-bridge.txt
bench-bridge:
	@mkdir -p .data
	scripts/with-servers.sh sh -c "go test -run '^$$' -bench 'IRCDirectFloor|BridgeLatency|BridgeThroughput' -benchtime 10s -timeout 30m ./bridge/ && go test -run '^$$' -bench BridgeMemory -benchtime 1x -timeout 30m ./bridge/" 2>&1 | tee .data/bench-bridge.txt
	go run ./internal/benchtab -title 'Benchmarks: IRC bridge' -cmd 'make bench-bridge' -split -note 'What each benchmark measures and what limits it: [scaling.md](scaling.md).' -o doc/benchmarks-bridge.md .data/bench-bridge.txt

servers-start:
	scripts/servers.sh start

servers-stop:
	scripts/servers.sh stop

clean:
	scripts/servers.sh stop
	rm -rf .data zkchat

## graph: the import graph between zkchat's packages (doc/architecture.md)
graph:
	@go list -f '{{.ImportPath}}{{range .Imports}} {{.}}{{end}}' ./... | awk '{ p = $$1; sub("github.com/zkchat/zkchat/", "", p); out = ""; for (i = 2; i <= NF; i++) if ($$i ~ /^github.com\/zkchat\/zkchat\//) { d = $$i; sub("github.com/zkchat/zkchat/", "", d); out = out " " d } print p " ->" out }'
