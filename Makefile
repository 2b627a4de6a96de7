# Rill: one command from a fresh clone, e.g. `make cluster` or `make test`.
# Each target that needs the tools depends on .venv, which builds itself.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
NODES ?= 3
BASE_PORT ?= 9092
DATA_DIR ?= ./data
SIGNAL ?= KILL
PYTEST_ARGS ?=
USERS ?= 20
RUN_TIME ?= 30s
FUZZ_CASES ?= 100000
DURATION ?= 20
RATE ?= 50

# Every node's client address: 127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094 by default,
# which is also the rill command's default --bootstrap.
BOOTSTRAP := $(shell i=0; while [ $$i -lt $(NODES) ]; do printf '%s127.0.0.1:%s' "$$sep" $$(($(BASE_PORT) + i)); sep=,; i=$$((i + 1)); done)
# make commands in the hints below name a data dir other than the default.
DATA_DIR_VAR := $(if $(filter-out ./data,$(DATA_DIR)), DATA_DIR=$(DATA_DIR))
ifeq ($(NODES)-$(BASE_PORT),3-9092)
BOOTSTRAP_FLAG :=
else
BOOTSTRAP_FLAG := --bootstrap $(BOOTSTRAP)
endif

ifneq ($(filter kill-node start-node,$(MAKECMDGOALS)),)
ifndef N
$(error usage: make kill-node N=<node id> [SIGNAL=KILL|TERM|STOP|CONT], or make start-node N=<node id>)
endif
endif

.PHONY: cluster status down test fuzz bench demo loadtest kill-node start-node clean

# The virtualenv, rebuilt when pyproject.toml changes. A failed install
# backdates .venv so that the next run tries again instead of trusting it.
$(VENV): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]' || { touch -t 197001010000 $(VENV); exit 1; }
	touch $(VENV)

# Starts all nodes at once (a node serves clients only once a Raft majority runs) and
# prints the bootstrap list of all nodes, then their status.
cluster: $(VENV)
	$(BIN)/rill cluster up --nodes $(NODES) --base-port $(BASE_PORT) --data-dir $(DATA_DIR)
	$(BIN)/rill cluster status --data-dir $(DATA_DIR)
	@echo
	@echo "What to try next:"
	@echo "  $(BIN)/rill topic create orders --partitions 3 --replication-factor $(NODES) $(BOOTSTRAP_FLAG)"
	@echo "  seq 1 10 | $(BIN)/rill produce orders $(BOOTSTRAP_FLAG)"
	@echo "  $(BIN)/rill consume orders --from-beginning --max-messages 10 $(BOOTSTRAP_FLAG)"
	@echo "  $(BIN)/rill topic describe orders $(BOOTSTRAP_FLAG)"
	@echo "  make loadtest USERS=20 RUN_TIME=30s"
	@echo "  make kill-node N=2$(DATA_DIR_VAR); make status$(DATA_DIR_VAR); make start-node N=2$(DATA_DIR_VAR)"
	@echo "  $(BIN)/rill cluster rebalance-leaders $(BOOTSTRAP_FLAG)"
	@echo "  make down$(DATA_DIR_VAR)"

status: $(VENV)
	$(BIN)/rill cluster status --data-dir $(DATA_DIR)

down: $(VENV)
	$(BIN)/rill cluster down --data-dir $(DATA_DIR)

# The console's browser tests (tests/browser) drive Debian's chromium package, never a downloaded browser.
# As root, install it when it is missing; elsewhere, or if apt-get fails, those tests skip and say why.
.PHONY: chromium
chromium:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium for the browser tests"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
			|| echo "could not install chromium: the browser tests will skip"; \
	fi

# pytest exits 5 when it collects no tests; like any non-zero exit, that fails the target.
# The property tests run their fast derandomized subset here, whatever HYPOTHESIS_PROFILE the shell has.
# Then the performance guard (bench-quick, below) runs once.
test: $(VENV) chromium
	HYPOTHESIS_PROFILE=default $(BIN)/pytest -p no:cacheprovider $(PYTEST_ARGS)
	$(BIN)/python loadtest/bench_quick.py

# Fuzzes a real broker over its wire protocol (tests/fuzz): FUZZ_CASES random cases in all, no test timeout;
# then the client API's property tests (wrong types and values for every public method) at the fuzz profile.
CLIENT_FUZZ := tests/client/test_api_fuzz.py tests/client/test_consumer_bad_input.py tests/client/test_consumer_corrupt_batch.py
fuzz: $(VENV)
	HYPOTHESIS_PROFILE=fuzz FUZZ_CASES=$(FUZZ_CASES) $(BIN)/pytest -p no:cacheprovider --timeout=0 tests/fuzz $(PYTEST_ARGS)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest -p no:cacheprovider --timeout=0 $(CLIENT_FUZZ) $(PYTEST_ARGS)

# Rill against its own ceilings and its peers, as ratios (loadtest/bench.py; BENCH_ARGS, e.g. --sections single).
# Redis and NATS columns need bench-peers once; otherwise they say "not installed".
BENCH_ARGS ?=
bench: $(VENV)
	$(BIN)/python loadtest/bench.py $(BENCH_ARGS)

# The peers of the bench: Debian's redis-server and nats-server (as root, like chromium), the Python clients
# from PyPI (the "peers" extra), then the bench.
.PHONY: bench-peers
bench-peers: $(VENV)
	@if { ! command -v redis-server || ! { command -v nats-server || [ -x /usr/sbin/nats-server ]; }; } >/dev/null \
			&& [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing redis-server and nats-server for the bench"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server nats-server >/dev/null; } \
			|| echo "could not install redis-server and nats-server: their columns will say not installed"; \
	fi
	$(BIN)/python -m pip install --quiet -e '.[dev,peers]'
	$(BIN)/python loadtest/bench.py $(BENCH_ARGS)

# The performance guard (loadtest/bench_quick.py): produce and consume on one broker as ratios to the client's
# ceiling, against loadtest/bench_baseline.json; fails below half of it. BASELINE=write records a new baseline.
.PHONY: bench-quick
bench-quick: $(VENV)
	$(BIN)/python loadtest/bench_quick.py $(if $(filter write,$(BASELINE)),--write-baseline)

# The e-commerce demo (examples/ecommerce): starts the cluster if none answers, the order, payment, inventory and
# notification services, places orders for DURATION seconds at RATE per second, shows a live summary, stops what it started.
demo: $(VENV)
	$(BIN)/python examples/ecommerce/demo.py --nodes $(NODES) --base-port $(BASE_PORT) --data-dir $(DATA_DIR) \
		--duration $(DURATION) --rate $(RATE)

# Locust, headless, against the running cluster (make cluster): publishers and a consumer group.
loadtest: $(VENV)
	$(BIN)/locust -f loadtest/locustfile.py --headless --users $(USERS) --spawn-rate $(USERS) \
		--run-time $(RUN_TIME) --host $(BOOTSTRAP) --only-summary

kill-node: $(VENV)
	$(BIN)/rill cluster kill $(N) --signal $(SIGNAL) --data-dir $(DATA_DIR)

start-node: $(VENV)
	$(BIN)/rill cluster start $(N) --data-dir $(DATA_DIR)

# Stops the cluster first (when the tools exist) so no node writes into a removed folder.
clean:
	if [ -x $(BIN)/rill ]; then $(BIN)/rill cluster down --data-dir $(DATA_DIR); fi
	rm -rf $(DATA_DIR)
