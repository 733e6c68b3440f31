#!/usr/bin/env bash
# MyIM against mosquitto on this machine, in one run: `myim bench pairs` (release build) against
# the reference broker and against MyIM, interleaved (mosquitto, MyIM, mosquitto, MyIM, ...), then
# one table: each figure as median [min-max] over the runs, and the ratio MyIM / mosquitto.
#
#   bench/compare.sh                      # or: make bench-compare
#   RUNS=5 SECONDS_PER_PHASE=10 bench/compare.sh
#
# Settings (environment): RUNS (3), SECONDS_PER_PHASE (5), PAIRS (32), WINDOW (8), RATES
# ("1000 10000": one open-loop phase per rate, the lower first so that it runs on an empty system), QOS (0: MyIM best effort, like MQTT QoS 0; 1:
# stored and acked), DRAIN (3 s after each phase), SKIP_BUILD (1 to use the existing binary).
#
# Pinning, when taskset is there and the machine has 2 cores or more: mosquitto on CPU 0, the
# generator on CPU 1. MyIM's servers and the generator run in one process and cannot be pinned
# apart: its runs get both CPUs, and its CPU figures are the whole process's.
#
# Bounded: every run is killed after RUN_LIMIT seconds (90); with the defaults the whole script
# takes about two and a half minutes after the build. It starts and stops its own mosquitto (by
# PID, inside `myim bench pairs`) and touches nothing else.
set -euo pipefail

cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
SECONDS_PER_PHASE=${SECONDS_PER_PHASE:-5}
PAIRS=${PAIRS:-32}
WINDOW=${WINDOW:-8}
RATES=${RATES:-"1000 10000"}
QOS=${QOS:-0}
DRAIN=${DRAIN:-3}
RUN_LIMIT=${RUN_LIMIT:-90}
SWIFT=${SWIFT:-swift}
BIN=.build/release/myim

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  "$SWIFT" build -c release --product myim
fi
[ -x "$BIN" ] || { echo "no $BIN: run \`swift build -c release --product myim\`" >&2; exit 1; }

if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing mosquitto (Debian package)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null; }
  else
    echo "mosquitto is missing: sudo apt-get install -y mosquitto" >&2
    exit 1
  fi
fi

cores=$(nproc)
server_pin=()
generator_pin=()
pinning="none (taskset missing or fewer than 2 cores): servers and generator share the cores"
if command -v taskset >/dev/null 2>&1 && [ "$cores" -ge 2 ]; then
  server_pin=(--server-cpus 0)
  generator_pin=(taskset -c 1)
  pinning="mosquitto on CPU 0, its generator on CPU 1; MyIM (servers + generator in one process) on CPUs 0-$((cores - 1)), not separable"
fi

rate_args=()
for rate in $RATES; do rate_args+=(--rate "$rate"); done
common=(bench pairs --json --seconds "$SECONDS_PER_PHASE" --pairs "$PAIRS" --window "$WINDOW" --drain "$DRAIN" "${rate_args[@]}")

out=$(mktemp -d "${TMPDIR:-/tmp}/myim-compare.XXXXXX")
trap 'rm -rf "$out"' EXIT

load_before=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")
echo "MyIM vs mosquitto: $RUNS runs each, interleaved; ${SECONDS_PER_PHASE} s per phase, $PAIRS pairs, window $WINDOW, rates: $RATES msg/s, MyIM QoS $QOS"
echo "pinning: $pinning"
echo "load average before: $load_before; $cores cores; $(mosquitto -h 2>/dev/null | head -1 || true)"
echo

failed=0
# One bounded run; its output to $1, a failure reported with the end of that output.
run_one() {
  local file=$1 status=0
  shift
  timeout --kill-after=10 "$RUN_LIMIT" "$@" >"$file" 2>&1 || status=$?
  if [ "$status" -ne 0 ]; then
    echo "  failed (exit status $status), the end of its output:" >&2
    tail -20 "$file" >&2
    failed=$((failed + 1))
  fi
}
for run in $(seq 1 "$RUNS"); do
  echo "run $run/$RUNS: mosquitto"
  run_one "$out/mosquitto-$run.txt" "${generator_pin[@]}" "$BIN" "${common[@]}" --reference mosquitto "${server_pin[@]}"
  echo "run $run/$RUNS: MyIM"
  run_one "$out/myim-$run.txt" "$BIN" "${common[@]}" --qos "$QOS"
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")
echo

python3 - "$out" "$RUNS" <<'PY'
import json, os, statistics, sys

directory, runs = sys.argv[1], int(sys.argv[2])
phases = {}  # (system, phase key) -> list of run dicts
order = []
for system in ("mosquitto", "myim"):
    for run in range(1, runs + 1):
        path = os.path.join(directory, f"{system}-{run}.txt")
        if not os.path.exists(path):
            continue
        for line in open(path, encoding="utf-8", errors="replace"):
            if not line.startswith('{"bench":"pairs"'):
                continue
            row = json.loads(line)
            key = "closed loop" if row["phase"] == "closed" else f"open loop {row['rate']:.0f}/s"
            if key not in order:
                order.append(key)
            phases.setdefault((system, key), []).append(row)

def fmt(value):
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"

def cell(values):
    if not values:
        return "-"
    return f"{fmt(statistics.median(values))} [{fmt(min(values))}-{fmt(max(values))}]"

figures = [
    ("delivered/s (in window)", lambda r: r["delivered_per_s"], "higher"),
    ("undelivered after drain", lambda r: r["sent"] - r["delivered"], "lower"),
    ("latency p50 ms", lambda r: r["p50_us"] / 1000, "lower"),
    ("latency p99 ms", lambda r: r["p99_us"] / 1000, "lower"),
    ("latency p99.9 ms", lambda r: r["p999_us"] / 1000, "lower"),
    ("server CPU us/msg (*)", lambda r: r.get("server_cpu_us_per_msg"), "lower"),
    ("server cores busy (*)", lambda r: r.get("server_cores"), "-"),
    ("generator cores busy (mosquitto runs)", lambda r: None if r["server_cpu_is_whole_process"] else r.get("process_cores"), "-"),
    ("all processes CPU us/msg", lambda r: r.get("total_cpu_us_per_msg"), "lower"),
    ("errors", lambda r: r["errors"], "lower"),
]

rows = [("phase / figure", "mosquitto", "MyIM", "MyIM/mosq", "better")]
for key in order:
    rows.append((key, "", "", "", ""))
    for name, get, better in figures:
        a = [v for v in (get(r) for r in phases.get(("mosquitto", key), [])) if v is not None]
        b = [v for v in (get(r) for r in phases.get(("myim", key), [])) if v is not None]
        ratio = "-"
        if a and b and statistics.median(a) != 0:
            ratio = f"{statistics.median(b) / statistics.median(a):.2f}"
        rows.append(("  " + name, cell(a), cell(b), ratio, better))

widths = [max(len(r[i]) for r in rows) for i in range(5)]
for index, r in enumerate(rows):
    print("  ".join(r[i].ljust(widths[i]) if i == 0 else r[i].rjust(widths[i]) for i in range(5)).rstrip())
    if index == 0:
        print("  ".join("-" * w for w in widths))
print()
print("median [min-max] over the runs; ratio of the medians, MyIM / mosquitto.")
print("(*) mosquitto: the broker process alone (/proc/<pid>/stat). MyIM: the whole process -- center, both endpoints")
print("    AND the generator, which share it and cannot be measured apart; 'all processes' adds mosquitto's generator.")
PY

echo
echo "load average after: $load_after"
if [ "$failed" -gt 0 ]; then
  echo "$failed run(s) failed" >&2
  exit 1
fi
