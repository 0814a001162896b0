# Everything a newcomer needs: `make demo` runs the pipeline on an embedded
# broker, `make test` runs every test. Run `make help` for the rest.

GO       ?= go
BIN      := bin/orders
STAGE    ?= 1
COUNT    ?= 20
BROKER_DATA ?= .broker-data

# A count of executions, not a duration: with a duration Go's fuzz coordinator
# can fail a target with "context deadline exceeded" when a worker is still
# busy as the time runs out, a race in the toolchain and not a finding.
FUZZTIME ?= 100000x

.PHONY: js-deps help build demo test vet fuzz chaos chaos-cluster bench deps broker topics run-main run-retry run-aggregator produce stats clean secrets

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

build: ## build bin/orders
	$(GO) build -o $(BIN) ./cmd/orders

demo: build ## run the whole pipeline in one process on an embedded broker (COUNT orders)
	./$(BIN) demo --count $(COUNT)

test: deps vet js-deps ## go vet, then every test with the race detector (integration tests included)
	$(GO) test -race -count=1 -timeout 10m ./...
# The end-to-end test on librdkafka's mock cluster: a module of its own, since it needs cgo.
	cd services/interop/rdkafka && CGO_ENABLED=1 $(GO) vet ./... && CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 5m ./...

CHAOS_ORDERS ?= 100000

chaos: build ## long fault-injection run on 3 broker nodes: kills, SIGSTOP, scaling, a broker kill and protocol faults (CHAOS_ORDERS orders, default 100000)
	$(GO) build -o bin/chaos ./cmd/chaos
	./bin/chaos -bin $(BIN) -orders $(CHAOS_ORDERS) -rate 2000 -partitions 6 -nodes 3

chaos-cluster: build ## protocol faults only, on 3 broker nodes: 20000 orders at 500/s, a fault every 1-2 s for 40 s
	$(GO) build -o bin/chaos ./cmd/chaos
	./bin/chaos -bin $(BIN) -mode cluster -nodes 3 -orders 20000 -rate 500 -procs 2 -partitions 6 -fault-time 40s

BENCH_ORDERS ?= 500000

bench: build ## benchmark every stage against the bare Kafka client (BENCH_ORDERS orders per run); writes services/bench/results
	$(GO) build -o bin/bench ./cmd/bench
	./bin/bench -bin $(BIN) -orders $(BENCH_ORDERS) -out services/bench/results

fuzz: ## run each fuzz test for FUZZTIME (default 100000x executions; a duration such as 1m also works)
	$(GO) test ./schemas/ -run=NONE -fuzz='^FuzzDecode$$' -fuzztime=$(FUZZTIME)
	$(GO) test ./schemas/ -run=NONE -fuzz=FuzzDecodeResolved -fuzztime=$(FUZZTIME)
	$(GO) test ./services/envelope/ -run=NONE -fuzz=FuzzParseHistory -fuzztime=$(FUZZTIME)
	$(GO) test ./services/envelope/ -run=NONE -fuzz=FuzzFailures -fuzztime=$(FUZZTIME)
	$(GO) test ./services/envelope/ -run=NONE -fuzz=FuzzTimes -fuzztime=$(FUZZTIME)
	$(GO) test ./services/aggregator/ -run=NONE -fuzz=FuzzSnapshotMarshal -fuzztime=$(FUZZTIME)
	$(GO) test ./services/kafka/wire/ -run=NONE -fuzz=FuzzAppendBatch -fuzztime=$(FUZZTIME)
	$(GO) test ./services/kafka/wire/ -run=NONE -fuzz=FuzzDecodeBatches -fuzztime=$(FUZZTIME)
	$(GO) test ./services/kafka/wire/ -run=NONE -fuzz=FuzzParseFetchResponse -fuzztime=$(FUZZTIME)

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }

# The kafkajs interop test (services/interop/kafkajs) runs Node.js with the
# packages its package-lock.json pins.
js-deps:
	@command -v npm >/dev/null 2>&1 || { echo "npm is missing: install Node.js 20 or later (services/interop/kafkajs runs kafkajs)"; exit 1; }
	cd services/interop/kafkajs && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error

# The compose file is validated by Debian's docker-compose; install it when
# it is missing and we may (root with apt-get).
deps:
	@command -v docker-compose >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing docker-compose (validates docker-compose.yml in the tests)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >/dev/null; \
	  else echo "docker-compose is missing: install it (apt-get install docker-compose) to validate docker-compose.yml"; exit 1; fi; }

broker: build ## run the embedded broker on 127.0.0.1:9092, keeping data in .broker-data
	./$(BIN) broker --data-dir $(BROKER_DATA)

topics: build ## create the pipeline topics
	./$(BIN) topics

run-main: build ## run one main-stage process
	./$(BIN) run main

run-retry: build ## run one process of retry stage STAGE (default 1)
	./$(BIN) run retry --stage $(STAGE)

run-aggregator: build ## run one aggregator process
	./$(BIN) run aggregator

produce: build ## produce COUNT random orders
	./$(BIN) produce --count $(COUNT)

stats: build ## print the running average
	./$(BIN) stats

clean: ## remove the binary and the broker's data
	rm -rf bin $(BROKER_DATA)

SECRETS ?= .secrets
SECURED_USERS := orders-super orders-admin orders-operator orders-producer orders-main orders-retry-1 orders-retry-2 orders-retry-3 orders-aggregator

secrets: ## a CA, a broker certificate and SCRAM users with random passwords in $(SECRETS)/ (local use only)
	@test ! -e $(SECRETS) || { echo "$(SECRETS) exists; remove it to make new secrets"; exit 1; }
	mkdir -p $(SECRETS)
	openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=orders local CA" \
	  -keyout $(SECRETS)/ca-key.pem -out $(SECRETS)/ca.pem 2>/dev/null
	openssl req -newkey rsa:2048 -nodes -subj "/CN=orders broker" \
	  -keyout $(SECRETS)/broker-key.pem -out $(SECRETS)/broker.csr 2>/dev/null
	printf 'subjectAltName=DNS:broker-secured,DNS:localhost,IP:127.0.0.1\n' > $(SECRETS)/san.ext
	openssl x509 -req -in $(SECRETS)/broker.csr -CA $(SECRETS)/ca.pem -CAkey $(SECRETS)/ca-key.pem \
	  -CAcreateserial -days 365 -extfile $(SECRETS)/san.ext -out $(SECRETS)/broker.pem 2>/dev/null
	@for u in $(SECURED_USERS); do \
	  p=$$(openssl rand -hex 16); printf '%s\n' "$$p" > $(SECRETS)/$$u.password; \
	  echo "SCRAM-SHA-512 $$u $$p" >> $(SECRETS)/users.txt; done
	chmod 0644 $(SECRETS)/*  # the container runs as a non-root user
	@echo "wrote $(SECRETS)/: ca.pem, broker.pem, broker-key.pem, users.txt, one <user>.password per user"
