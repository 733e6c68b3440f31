#!/usr/bin/env bash
# MyIM against mosquitto on this machine, in one run (release build):
#   1. `myim bench pairs` against the reference broker and against MyIM, interleaved
#      (mosquitto, MyIM, mosquitto, MyIM, ...): closed loop and open loops;
#   2. `myim bench idle --reconnect`: memory per idle connection, interleaved the same way,
#      then every connection closed and reopened with its token (MQTT: client id);
#   3. scale: one open-loop phase while K idle connections are held, for each K;
#   4. `myim bench logins` (MyIM only: mosquitto has no logins to compare): full logins/s
#      against the scrypt bound on the servers' CPU, and token reconnects/s;
# then one table per part: each figure as median [min-max] over the runs, and the ratio
# MyIM / mosquitto.
#
#   bench/compare.sh                      # or: make bench-compare
#   RUNS=5 SECONDS_PER_PHASE=10 bench/compare.sh
#
# Settings (environment): RUNS (3), SECONDS_PER_PHASE (5), PAIRS (32), WINDOW (8), RATES
# ("1000 10000": one open-loop phase per rate, the lower first so that it runs on an empty
# system), QOS (0: MyIM best effort, like MQTT QoS 0; 1: stored and acked), DRAIN (3 s after
# each phase), IDLE ("1000 5000": idle connections held after each step), SCALE ("1000 5000
# 15000": idle connections held during the scale phase; empty skips the part), SCALE_RATE
# (1000 msg/s), LOGINS (1: the logins part; 0 skips it), SKIP_BUILD (1 to use the existing
# binary).
#
# MyIM's servers run as their own processes (redis-server, the login center, the center and
# two endpoints, TLS links), started and stopped by `myim bench`. Pinning, when taskset is
# there and the machine has 2 cores or more: the servers (mosquitto, or all of MyIM's) on
# CPU 0, the generator on CPU 1.
#
# Bounded: every run is killed after RUN_LIMIT seconds (120); with the defaults the whole
# script takes about six minutes after the build. It starts and stops its own servers (by
# PID, inside `myim bench`) and touches nothing else.
set -euo pipefail

cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
SECONDS_PER_PHASE=${SECONDS_PER_PHASE:-5}
PAIRS=${PAIRS:-32}
WINDOW=${WINDOW:-8}
RATES=${RATES:-"1000 10000"}
QOS=${QOS:-0}
DRAIN=${DRAIN:-3}
RUN_LIMIT=${RUN_LIMIT:-120}
IDLE=${IDLE:-"1000 5000"}
SCALE=${SCALE-"1000 5000 15000"}
SCALE_RATE=${SCALE_RATE:-1000}
LOGINS=${LOGINS:-1}
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
  pinning="servers (mosquitto, or MyIM's processes and Redis) on CPU 0, the generator on CPU 1"
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
  echo "pairs run $run/$RUNS: mosquitto"
  run_one "$out/mosquitto-$run.txt" "${generator_pin[@]}" "$BIN" "${common[@]}" --reference mosquitto "${server_pin[@]}"
  echo "pairs run $run/$RUNS: MyIM"
  run_one "$out/myim-$run.txt" "${generator_pin[@]}" "$BIN" "${common[@]}" --qos "$QOS" "${server_pin[@]}"
done
idle_args=()
for count in $IDLE; do idle_args+=(--connections "$count"); done
for run in $(seq 1 "$RUNS"); do
  echo "idle run $run/$RUNS: mosquitto"
  run_one "$out/mosquitto-idle-$run.txt" "${generator_pin[@]}" "$BIN" bench idle --json --reconnect "${idle_args[@]}" --reference mosquitto "${server_pin[@]}"
  echo "idle run $run/$RUNS: MyIM"
  run_one "$out/myim-idle-$run.txt" "${generator_pin[@]}" "$BIN" bench idle --json --reconnect "${idle_args[@]}" "${server_pin[@]}"
done
for count in $SCALE; do
  scale=(bench pairs --json --seconds "$SECONDS_PER_PHASE" --pairs "$PAIRS" --drain "$DRAIN" --phases open --rate "$SCALE_RATE" --idle "$count")
  echo "scale, $count idle: mosquitto"
  run_one "$out/mosquitto-scale-$count.txt" "${generator_pin[@]}" "$BIN" "${scale[@]}" --reference mosquitto "${server_pin[@]}"
  echo "scale, $count idle: MyIM"
  run_one "$out/myim-scale-$count.txt" "${generator_pin[@]}" "$BIN" "${scale[@]}" --qos "$QOS" "${server_pin[@]}"
done
if [ "$LOGINS" != 0 ]; then
  for run in $(seq 1 "$RUNS"); do
    echo "logins run $run/$RUNS: MyIM"
    run_one "$out/myim-logins-$run.txt" "${generator_pin[@]}" "$BIN" bench logins --json "${server_pin[@]}"
  done
fi
load_after=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")
echo

python3 - "$out" "$RUNS" "$SCALE" "${#server_pin[@]}" <<'PY'
import json, os, statistics, sys

directory, runs, scales, pinned = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4] != "0"

def lines(name, bench):
    path = os.path.join(directory, name)
    if not os.path.exists(path):
        return []
    return [json.loads(line) for line in open(path, encoding="utf-8", errors="replace") if line.startswith('{"bench":"%s"' % bench)]

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
    if len(values) == 1:
        return fmt(values[0])
    return f"{fmt(statistics.median(values))} [{fmt(min(values))}-{fmt(max(values))}]"

def table(groups, figures):
    """groups: [(title, {system: [rows]})]; figures: [(name, getter, better)]."""
    rows = [("figure", "mosquitto", "MyIM", "MyIM/mosq", "better")]
    for title, by_system in groups:
        rows.append((title, "", "", "", ""))
        for name, get, better in figures:
            a = [v for v in (get(r) for r in by_system.get("mosquitto", [])) if v is not None]
            b = [v for v in (get(r) for r in by_system.get("myim", [])) if v is not None]
            if not a and not b:
                continue
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

def phase_key(row):
    return "closed loop" if row["phase"] == "closed" else f"open loop {row['rate']:.0f}/s"

def process(name):
    return lambda r: (r.get("server_processes_us_per_msg") or {}).get(name)

pairs_figures = [
    ("delivered/s (in window)", lambda r: r["delivered_per_s"], "higher"),
    ("undelivered after drain", lambda r: r["sent"] - r["delivered"], "lower"),
    ("latency p50 ms", lambda r: r["p50_us"] / 1000, "lower"),
    ("latency p99 ms", lambda r: r["p99_us"] / 1000, "lower"),
    ("latency p99.9 ms", lambda r: r["p999_us"] / 1000, "lower"),
    ("server CPU us/msg (all server processes)", lambda r: r.get("server_cpu_us_per_msg"), "lower"),
    ("  of which center", process("bench-center"), "-"),
    ("  of which endpoint 1 (senders)", process("bench-ep1"), "-"),
    ("  of which endpoint 2 (receivers)", process("bench-ep2"), "-"),
    ("  of which redis", process("redis"), "-"),
    ("server cores busy", lambda r: r.get("server_cores"), "-"),
    ("generator cores busy", lambda r: r.get("process_cores"), "-"),
    ("all processes CPU us/msg", lambda r: r.get("total_cpu_us_per_msg"), "lower"),
    ("errors", lambda r: r["errors"], "lower"),
]

print("1. Pairs (1:1 messages)")
print()
order, grouped = [], {}
for system in ("mosquitto", "myim"):
    for run in range(1, runs + 1):
        for row in lines(f"{system}-{run}.txt", "pairs"):
            key = phase_key(row)
            if key not in order:
                order.append(key)
            grouped.setdefault(key, {}).setdefault(system, []).append(row)
table([(key, grouped[key]) for key in order], pairs_figures)

print("2. Idle connections (memory after each step)")
print()
steps, grouped = [], {}
for system in ("mosquitto", "myim"):
    for run in range(1, runs + 1):
        for row in lines(f"{system}-idle-{run}.txt", "idle"):
            key = f"{row['connections']} idle connections" + (", reopened with their tokens" if row.get("reconnected") else "")
            if key not in steps:
                steps.append(key)
            grouped.setdefault(key, {}).setdefault(system, []).append(row)
table([(key, grouped[key]) for key in steps], [
    ("server RSS B per connection (all server processes)", lambda r: sum(r["rss_bytes_per_connection"].values()), "lower"),
    ("  of which the endpoint holding them", lambda r: r["rss_bytes_per_connection"].get("bench-ep1"), "-"),
    ("  of which the center", lambda r: r["rss_bytes_per_connection"].get("bench-center"), "-"),
    ("  of which redis", lambda r: r["rss_bytes_per_connection"].get("redis"), "-"),
    ("kernel slab B per connection (both ends)", lambda r: r.get("kernel_slab_bytes_per_connection"), "-"),
    ("connections opened/s", lambda r: r["connects_per_s"], "higher"),
    ("  server CPU us per connection opened", lambda r: r.get("server_cpu_us_per_connect"), "lower"),
    ("  server cores busy while opening", lambda r: r.get("server_cores_busy"), "-"),
])

if scales:
    print(f"3. Scale (one open-loop phase while idle connections are held; one run each)")
    print()
    groups = []
    for count in scales:
        by_system = {}
        for system in ("mosquitto", "myim"):
            by_system[system] = lines(f"{system}-scale-{count}.txt", "pairs")
        groups.append((f"{count} idle, " + (phase_key(by_system["myim"][0]) if by_system["myim"] else "open loop"), by_system))
    table(groups, [f for f in pairs_figures if not f[0].startswith("  of which")])

logins = [row for run in range(1, runs + 1) for row in lines(f"myim-logins-{run}.txt", "logins")]
if logins:
    where = "the login center and the bound's hashing on the servers' CPU" if pinned else "nothing pinned: servers, bound and clients share the cores"
    print(f"4. Logins (MyIM only; {where})")
    print()
    share = lambda a, b: 100 * a / b if b else None
    rows = [
        ("full logins / scrypt bound %", [share(r["logins_per_s"], r["bound_per_s"]) for r in logins]),
        ("  median of each run's rounds %", [100 * r["median_round_ratio"] for r in logins]),
        ("  a hash's share of a login's CPU %", [share(r["cpu_per_hash_ms"], r["cpu_per_login_ms"]) for r in logins]),
        ("full logins/s", [r["logins_per_s"] for r in logins]),
        ("scrypt bound, hashes/s", [r["bound_per_s"] for r in logins]),
        ("token reconnects/s (16 clients, closed loop)", [r["reconnects_per_s"] for r in logins]),
        ("failed logins and reconnects", [r["failed"] + r["reconnects_failed"] for r in logins]),
    ]
    width = max(len(name) for name, _ in rows)
    for name, values in rows:
        print(f"{name.ljust(width)}  {cell([v for v in values if v is not None])}")
    print()

print("median [min-max] over the runs; ratio of the medians, MyIM / mosquitto. Server CPU is read from")
print("/proc/<pid>/stat for each server process (mosquitto; MyIM's center, endpoints, login center and Redis).")
PY

echo
echo "load average after: $load_after"
if [ "$failed" -gt 0 ]; then
  echo "$failed run(s) failed" >&2
  exit 1
fi
