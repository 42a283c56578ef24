#!/usr/bin/env bash
# bench/run.sh: the performance benchmark of issue 7, with one command
# (`make bench` builds bin/smsctl first, then runs this).
#
# On this machine it: makes sure PostgreSQL runs (scripts/postgres.sh) and
# recreates database smsctl_bench; starts a real Apache Kafka broker
# (scripts/kafka.sh, own state dir and port; BENCH_KAFKA_NODES=3: a
# three-broker KRaft cluster instead); migrates; creates an API key;
# starts `serve api` and `serve processor` as separate processes; measures;
# stops everything with SIGTERM; prints one markdown table, also written to
# bench/results/<UTC timestamp>.md (logs and raw outputs next to it).
#
# Phases (every figure of the issue; the baseline runs in the same run):
#   0  baseline: bench/echo decodes the same JSON and answers 202 (wrk, and
#      the open-loop generator at the latency rate)
#   1  saturation: wrk -t2 -c128 POST /v1/messages; accepted/s, non-202s;
#      first with the API alone (the processor not started yet: its work
#      waits in Kafka), then with the processor running at delay 0
#   2  latency: bench/loadgen, open loop at 5,000/s (no coordinated omission)
#   3  end to end: simulation delay 0, 10% failures, fixed offered rate;
#      final statuses/s from the database, consumer lag at start and end
#   4  default simulation (1-3 s): processor rate, deliveries in flight
#   5  peak RSS (VmHWM) of each role; serve api start -> /readyz 200
#   6  loss check: stored == 202s counted, all final once drained
#   7-12 (wave 2; BENCH_SKIP="batch priority scheduler webhooks smpp inbound"
#      leaves any of them out): 7 batch POST (100 and 1,000 per request),
#      8 a high-priority message behind a low-priority backlog, 9 the
#      scheduler releasing many messages due at once, 10 webhooks (a/b),
#      11 SMPP through scripts/smsc.sh, 12 inbound (internal route, SMSC
#      mo) and the opt-out check A/B. See bench/README.md.
#
# Settings (environment; durations as Go/wrk durations: 30s, 2m):
#   BENCH_QUICK=1            smoke run of about 11 minutes (short phases)
#   BENCH_BASELINE=30s       wrk run against the echo baseline
#   BENCH_SATURATION=30s     wrk run against the API
#   BENCH_WRK_WARMUP=3s      unmeasured wrk run before each measured one
#   BENCH_WRK_THREADS=2 BENCH_WRK_CONNS=128
#   BENCH_LATENCY=20s BENCH_LATENCY_RATE=5000   (plus 2s unmeasured warm-up)
#   BENCH_E2E=60s BENCH_E2E_RATE=10000 BENCH_E2E_WARMUP=5s
#   BENCH_SIM=60s BENCH_SIM_RATE=10000 BENCH_SIM_WARMUP=10s
#   BENCH_READY_SAMPLES=5    starts of serve api timed to /readyz (median; quick: 1)
#   BENCH_DRAIN_TIMEOUT=5m   wait for the backlog after each phase
#   BENCH_LOADGEN_PROCS=2    GOMAXPROCS of the load generator
#   BENCH_E2E_RATE, BENCH_SIM_RATE may be "auto": 90% of the saturation figure
#   BENCH_LOADGEN_CONNS=256  connections of the load generator
#   BENCH_LOADGEN_CLIENT=raw its HTTP client: raw (minimal HTTP/1.1, several times cheaper) or nethttp
#   BENCH_REQUEST_TIMEOUT=30s  the generator's per-request timeout (quick: 10s)
#   BENCH_API_PORT=18080 BENCH_PROCESSOR_PORT=18081 BENCH_ECHO_PORT=18090
#   BENCH_KAFKA_PORT=29092 (controller: +1) BENCH_KAFKA_STATE=/tmp/smsctl-bench-kafka
#   BENCH_KAFKA_NODES=1      3: cluster mode, scripts/kafka.sh with SMS_KAFKA_NODES=3
#                            (node N on PORT+2(N-1), controller on the port after:
#                            PORT..PORT+5; state in STATE/node-N); the API creates
#                            the topics with replication factor 3 and
#                            min.insync.replicas 2 (SMS_KAFKA_REPLICATION_FACTOR,
#                            SMS_KAFKA_MIN_INSYNC_REPLICAS; both roles produce with
#                            acks=all), checked before phase 0; the kafka CPU is the
#                            sum of the three brokers' JVMs. 2 gives RF 2, min ISR 1.
#   BENCH_KAFKA_WARMUP=30s   produce and fetch on a scratch topic before measuring (quick: 10s)
#   BENCH_KAFKA_JVM_OPTS     default -XX:TieredStopAtLevel=4: the broker gets
#                            the full JIT (the test rails stop at C1 for a
#                            fast start; a benchmark wants steady state)
#   BENCH_PROFILE=1          run the roles as bench/pprofwrap (smsctl + net/http/pprof)
#                            and save CPU profiles of each measured phase
#                            (<phase>-api.pprof, <phase>-processor.pprof, with -top summaries)
#   BENCH_SKIP_BASELINE_LATENCY=1  skip the echo run of the open-loop generator
#   BENCH_ALLOW_UNSAFE_PG=1  run even if synchronous_commit or fsync is off
#   BENCH_SMSCTL=bin/smsctl  the binary measured (e.g. one built from a clean checkout)
#   Wave 2: BENCH_BATCH=8s BENCH_BATCH_CONNS=4 BENCH_PRIORITY_BACKLOG=100000
#   BENCH_PRIORITY_ROUNDS=3 BENCH_SCHED_COUNT=100000 BENCH_SCHED_RATE=1000
#   BENCH_SCHED_QUIET=10s BENCH_SCHED_WINDOW=20s BENCH_WEBHOOK=30s
#   BENCH_WEBHOOK_RATE (default: BENCH_E2E_RATE) BENCH_WEBHOOK_RATE_B (default:
#   60% of 10a's delivery rate) BENCH_WEBHOOK_B=20s BENCH_WEBHOOK_DRAIN=2m
#   BENCH_WEBHOOK_PER_ENDPOINT=32 BENCH_WEBHOOK_PORT=18092 BENCH_SMPP=45s
#   BENCH_SMPP_WARMUP=5s BENCH_SMPP_IDLE=5s BENCH_SMPP_RATE=40 BENCH_SMPP_BINDS=16
#   BENCH_SMPP_WINDOW=10 BENCH_SMSC_PORT=22775 BENCH_SMSC_STATE=/tmp/smsctl-bench-smsc
#   BENCH_INBOUND=15s BENCH_INBOUND_CONNS=32 BENCH_MO_COUNT=300 BENCH_MO_PARALLEL=4
#   BENCH_SUPPRESSION=8s BENCH_SUPPRESSION_COUNT=100000 BENCH_SUPPRESSION_RATE=2000
#   BENCH_SKIP="..."         wave-2 phases left out (batch priority scheduler webhooks smpp inbound)
#   BENCH_MAX_IN_FLIGHT=20000 SMS_MAX_IN_FLIGHT of every processor (its default)
#   SMS_*                    passed to both roles (e.g. SMS_DATABASE_MAX_CONNS),
#                            except what the benchmark sets itself
set -Eeuo pipefail
export LC_ALL=C

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# ---------------------------------------------------------------- settings

QUICK="${BENCH_QUICK:-0}"
if [[ "$QUICK" == 1 ]]; then
  d_base=5s d_sat=6s d_wrkwarm=1s d_lat=6s d_e2e=10s d_e2ewarm=3s d_sim=10s d_simwarm=6s d_timeout=10s d_ready=1 d_kwarm=10s
  d_batch=3s d_prio=10000 d_sched=10000 d_schedquiet=3s d_schedwin=5s d_wh=5s d_whb=5s d_whdrain=30s d_smpp=5s d_smppwarm=2s
  d_inbound=3s d_mo=40 d_supp=3s
else
  d_base=30s d_sat=30s d_wrkwarm=3s d_lat=20s d_e2e=60s d_e2ewarm=5s d_sim=60s d_simwarm=10s d_timeout=30s d_ready=5 d_kwarm=30s
  d_batch=8s d_prio=100000 d_sched=100000 d_schedquiet=10s d_schedwin=20s d_wh=30s d_whb=20s d_whdrain=2m d_smpp=45s d_smppwarm=5s
  d_inbound=15s d_mo=300 d_supp=8s
fi
KAFKA_WARMUP="${BENCH_KAFKA_WARMUP:-$d_kwarm}"
BASELINE="${BENCH_BASELINE:-$d_base}"
SATURATION="${BENCH_SATURATION:-$d_sat}"
WRK_WARMUP="${BENCH_WRK_WARMUP:-$d_wrkwarm}"
WRK_THREADS="${BENCH_WRK_THREADS:-2}"
WRK_CONNS="${BENCH_WRK_CONNS:-128}"
LATENCY="${BENCH_LATENCY:-$d_lat}"
LATENCY_RATE="${BENCH_LATENCY_RATE:-5000}"
LATENCY_WARMUP=2s
E2E="${BENCH_E2E:-$d_e2e}"
E2E_RATE="${BENCH_E2E_RATE:-10000}"
E2E_WARMUP="${BENCH_E2E_WARMUP:-$d_e2ewarm}"
SIM="${BENCH_SIM:-$d_sim}"
SIM_RATE="${BENCH_SIM_RATE:-10000}"
SIM_WARMUP="${BENCH_SIM_WARMUP:-$d_simwarm}"
DRAIN_TIMEOUT="${BENCH_DRAIN_TIMEOUT:-5m}"
BATCH="${BENCH_BATCH:-$d_batch}"
BATCH_CONNS="${BENCH_BATCH_CONNS:-4}"
PRIO_BACKLOG="${BENCH_PRIORITY_BACKLOG:-$d_prio}"
PRIO_ROUNDS="${BENCH_PRIORITY_ROUNDS:-3}"
SCHED_COUNT="${BENCH_SCHED_COUNT:-$d_sched}"
SCHED_RATE="${BENCH_SCHED_RATE:-1000}"
SCHED_QUIET="${BENCH_SCHED_QUIET:-$d_schedquiet}"
SCHED_WINDOW="${BENCH_SCHED_WINDOW:-$d_schedwin}"
WEBHOOK="${BENCH_WEBHOOK:-$d_wh}"
WEBHOOK_RATE="${BENCH_WEBHOOK_RATE:-}"
WEBHOOK_B="${BENCH_WEBHOOK_B:-$d_whb}"
WEBHOOK_PER_ENDPOINT="${BENCH_WEBHOOK_PER_ENDPOINT:-32}"
WEBHOOK_DRAIN="${BENCH_WEBHOOK_DRAIN:-$d_whdrain}"
SMPP="${BENCH_SMPP:-$d_smpp}"
SMPP_WARMUP="${BENCH_SMPP_WARMUP:-$d_smppwarm}"
SMPP_IDLE="${BENCH_SMPP_IDLE:-5s}"
SMPP_RATE="${BENCH_SMPP_RATE:-40}"
SMPP_BINDS="${BENCH_SMPP_BINDS:-16}"
SMPP_WINDOW="${BENCH_SMPP_WINDOW:-10}"
SMSC_PORT="${BENCH_SMSC_PORT:-22775}"
SMSC_STATE="${BENCH_SMSC_STATE:-/tmp/smsctl-bench-smsc}"
SMSC_HEAP="${BENCH_SMSC_HEAP:--Xmx512m -Xms64m}"
RECV_PORT="${BENCH_WEBHOOK_PORT:-18092}"
INBOUND="${BENCH_INBOUND:-$d_inbound}"
INBOUND_CONNS="${BENCH_INBOUND_CONNS:-32}"
INBOUND_TO=+14155550190
MO_COUNT="${BENCH_MO_COUNT:-$d_mo}"
MO_PAR="${BENCH_MO_PARALLEL:-4}"
SUPP="${BENCH_SUPPRESSION:-$d_supp}"
SUPP_COUNT="${BENCH_SUPPRESSION_COUNT:-100000}"
SUPP_RATE="${BENCH_SUPPRESSION_RATE:-2000}"
SKIP="${BENCH_SKIP:-}"
MAX_IN_FLIGHT="${BENCH_MAX_IN_FLIGHT:-20000}"
LOADGEN_PROCS="${BENCH_LOADGEN_PROCS:-2}"
LOADGEN_CONNS="${BENCH_LOADGEN_CONNS:-256}"
LOADGEN_CLIENT="${BENCH_LOADGEN_CLIENT:-raw}"
REQUEST_TIMEOUT="${BENCH_REQUEST_TIMEOUT:-$d_timeout}"
READY_SAMPLES="${BENCH_READY_SAMPLES:-$d_ready}"
API_PORT="${BENCH_API_PORT:-18080}"
PROC_PORT="${BENCH_PROCESSOR_PORT:-18081}"
ECHO_PORT="${BENCH_ECHO_PORT:-18090}"
KAFKA_PORT="${BENCH_KAFKA_PORT:-29092}"
KAFKA_STATE="${BENCH_KAFKA_STATE:-/tmp/smsctl-bench-kafka}"
KAFKA_JVM_OPTS="${BENCH_KAFKA_JVM_OPTS--XX:TieredStopAtLevel=4}"
KAFKA_NODES="${BENCH_KAFKA_NODES:-1}"
DB_NAME=smsctl_bench
SMSCTL="${BENCH_SMSCTL:-$ROOT/bin/smsctl}"
PROFILE="${BENCH_PROFILE:-0}"
API_PPROF=127.0.0.1:18060
PROC_PPROF=127.0.0.1:18061

RUN_ID="$(date -u +%Y%m%dT%H%M%SZ)"
RESULTS="$ROOT/bench/results"
OUT="$RESULTS/$RUN_ID"          # logs and raw outputs of this run
REPORT="$RESULTS/$RUN_ID.md"    # the table
TOOLS="$ROOT/tmp/bench-bin"

T_START=$SECONDS
log() { printf '[bench %4ds] %s\n' "$((SECONDS - T_START))" "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }

# seconds <duration>: 30s, 2m, 1m30s, 500ms -> seconds (float)
seconds() {
  local d="$1" total=0 num unit
  [[ "$d" =~ ^([0-9.]+(ms|s|m|h))+$ ]] || die "not a duration: '$d' (use e.g. 30s, 2m)"
  while [[ -n "$d" ]]; do
    [[ "$d" =~ ^([0-9.]+)(ms|s|m|h)(.*)$ ]]
    num="${BASH_REMATCH[1]}" unit="${BASH_REMATCH[2]}" d="${BASH_REMATCH[3]}"
    total="$(awk -v t="$total" -v n="$num" -v u="$unit" 'BEGIN {
      f = (u == "ms") ? 0.001 : (u == "s") ? 1 : (u == "m") ? 60 : 3600; print t + n * f }')"
  done
  echo "$total"
}
for v in KAFKA_WARMUP BASELINE SATURATION WRK_WARMUP LATENCY E2E E2E_WARMUP SIM SIM_WARMUP DRAIN_TIMEOUT REQUEST_TIMEOUT \
  BATCH SCHED_QUIET SCHED_WINDOW WEBHOOK WEBHOOK_B WEBHOOK_DRAIN SMPP SMPP_WARMUP SMPP_IDLE INBOUND SUPP; do
  seconds "${!v}" >/dev/null
done
for v in E2E_RATE SIM_RATE ${WEBHOOK_RATE:+WEBHOOK_RATE}; do
  [[ "${!v}" == auto || "${!v}" =~ ^[0-9]+$ ]] || die "BENCH_$v must be a whole number or auto (got '${!v}')"
done
for v in READY_SAMPLES WRK_THREADS WRK_CONNS LATENCY_RATE LOADGEN_PROCS LOADGEN_CONNS API_PORT PROC_PORT ECHO_PORT KAFKA_PORT \
  BATCH_CONNS PRIO_BACKLOG PRIO_ROUNDS SCHED_COUNT SCHED_RATE WEBHOOK_PER_ENDPOINT SMPP_RATE SMPP_BINDS SMPP_WINDOW SMSC_PORT RECV_PORT \
  INBOUND_CONNS MO_COUNT MO_PAR SUPP_COUNT SUPP_RATE MAX_IN_FLIGHT; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || die "BENCH_$v must be a whole number (got '${!v}')"
done
[[ "$KAFKA_NODES" =~ ^[1-9]$ ]] || die "BENCH_KAFKA_NODES must be a number of brokers from 1 to 9 (got '$KAFKA_NODES'; 3 is the cluster mode)"
# The topics' replication the cluster mode asks the API for (scripts/kafka.sh
# gives its own internal topics the same): RF min(3, nodes), min ISR 2 (1 with 2 nodes).
KAFKA_RF=$(( KAFKA_NODES < 3 ? KAFKA_NODES : 3 ))
KAFKA_MIN_ISR=$(( KAFKA_RF >= 3 ? 2 : 1 ))

# ---------------------------------------------------------------- cleanup

PIDS=()            # processes this script started, stopped in reverse order
declare -A NAME_OF # pid -> name
KAFKA_STARTED=0
SMSC_STARTED=0
STATUS_NOTES=()

start_bg() { # start_bg NAME LOGFILE cmd...   (sets LAST_PID)
  local name="$1" logf="$2"
  shift 2
  "$@" >"$logf" 2>&1 &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
  NAME_OF[$LAST_PID]="$name"
}

alive() { kill -0 "$1" 2>/dev/null; }

# fg_run cmd...: run a command in the background and wait for it, so that a
# SIGTERM/SIGINT to this script is handled at once (bash defers traps while
# a foreground command runs) and the command is stopped with the rest.
fg_run() {
  local pid rc=0
  "$@" &
  pid=$!
  PIDS+=("$pid")
  NAME_OF[$pid]="$(basename "$1") ${2:-}"
  wait "$pid" || rc=$?
  forget_pid "$pid"
  return "$rc"
}
nap() { fg_run sleep "$1"; }

forget_pid() {
  local keep=() p
  for p in "${PIDS[@]+"${PIDS[@]}"}"; do [[ "$p" != "$1" ]] && keep+=("$p"); done
  PIDS=("${keep[@]+"${keep[@]}"}")
}

# stop_pid PID [timeout_s]: SIGTERM, wait, SIGKILL; the exit status goes to STOP_RC.
# (Not in a $(...) subshell: only this shell can wait for its children.)
stop_pid() {
  local pid="$1" timeout="${2:-30}" i
  STOP_RC=0
  if alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 10; i++)); do
      alive "$pid" || break
      sleep 0.1
    done
    if alive "$pid"; then
      log "${NAME_OF[$pid]:-$pid} did not exit ${timeout}s after SIGTERM; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || STOP_RC=$?
  forget_pid "$pid"
}

smsc() { SMS_SMSC_STATE="$SMSC_STATE" SMS_SMSC_PORT="$SMSC_PORT" SMS_SMSC_RECEIPT_RULES="" SMS_SMSC_HEAP_OPTS="$SMSC_HEAP" "$ROOT/scripts/smsc.sh" "$@"; }
kafka() { SMS_KAFKA_NODES="$KAFKA_NODES" SMS_KAFKA_STATE="$KAFKA_STATE" SMS_KAFKA_PORT="$KAFKA_PORT" SMS_KAFKA_JVM_OPTS="$KAFKA_JVM_OPTS" "$ROOT/scripts/kafka.sh" "$@"; }

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    local pid="${PIDS[$i]}"
    if alive "$pid"; then
      log "stopping ${NAME_OF[$pid]:-process} (pid $pid)"
      kill -TERM "$pid" 2>/dev/null
    fi
  done
  for pid in "${PIDS[@]+"${PIDS[@]}"}"; do
    [[ -n "$pid" ]] || continue
    for ((i = 0; i < 250; i++)); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then
      log "${NAME_OF[$pid]:-$pid} ignored SIGTERM for 25s; SIGKILL"
      kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
  done
  if [[ "$SMSC_STARTED" == 1 ]]; then
    log "stopping and deleting the benchmark's SMSC simulator ($SMSC_STATE)"
    smsc clean >/dev/null 2>>"$OUT/smsc-script.log" || log "smsc.sh clean failed; see $OUT/smsc-script.log"
  fi
  if [[ "$KAFKA_STARTED" == 1 ]]; then
    log "stopping and deleting the benchmark's Kafka $( ((KAFKA_NODES > 1)) && echo "cluster ($KAFKA_NODES brokers, " || echo "broker (")$KAFKA_STATE)"
    kafka clean >/dev/null 2>>"$OUT/kafka-script.log" || log "kafka.sh clean failed; see $OUT/kafka-script.log"
  fi
  if ((rc != 0)); then
    log "FAILED (exit $rc) after $((SECONDS - T_START))s; logs in $OUT"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'log "failed: line $LINENO: $BASH_COMMAND"' ERR
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$OUT" "$TOOLS"

# One benchmark at a time on this machine: they would share ports and the broker.
exec 7>"/tmp/smsctl-bench.lock"
flock -n 7 || die "another bench/run.sh is running (lock /tmp/smsctl-bench.lock)"

# ---------------------------------------------------------------- tools

need() { command -v "$1" >/dev/null 2>&1; }
if ! need wrk; then
  log "installing wrk from Debian's packages"
  as_root=()
  [[ "$(id -u)" == 0 ]] || as_root=(sudo)
  { "${as_root[@]}" apt-get install -y -qq wrk || { "${as_root[@]}" apt-get update -qq && "${as_root[@]}" apt-get install -y -qq wrk; }; } >"$OUT/apt.log" 2>&1 \
    || die "could not install wrk (see $OUT/apt.log)"
fi
for t in go psql java curl awk flock jq; do need "$t" || die "$t is required"; done
if [[ ! -x "$SMSCTL" ]]; then
  [[ -z "${BENCH_SMSCTL:-}" ]] || die "BENCH_SMSCTL=$BENCH_SMSCTL is not an executable"
  log "bin/smsctl missing; building it"
  make -s build >&2
fi
log "building bench/loadgen, bench/echo and bench/webhookrecv"
CGO_ENABLED=0 go build -trimpath -o "$TOOLS/loadgen" ./bench/loadgen
CGO_ENABLED=0 go build -trimpath -o "$TOOLS/echo" ./bench/echo
CGO_ENABLED=0 go build -trimpath -o "$TOOLS/webhookrecv" ./bench/webhookrecv
LOADGEN="$TOOLS/loadgen"
ROLE_BIN="$SMSCTL"
# What is measured: the binary's own version (make build stamps git describe).
SMSCTL_VERSION="$("$SMSCTL" version 2>/dev/null | awk '{ print $NF; exit }')"
if [[ "$PROFILE" == 1 ]]; then
  log "BENCH_PROFILE=1: building bench/pprofwrap; the roles serve pprof on $API_PPROF and $PROC_PPROF"
  go build -trimpath -o "$TOOLS/smsctl-pprof" ./bench/pprofwrap
  ROLE_BIN="$TOOLS/smsctl-pprof"
  SMSCTL_VERSION="$(git describe --tags --always --dirty 2>/dev/null || echo '?') (bench/pprofwrap built from the working tree)"
fi

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
ports=("$API_PORT" "$PROC_PORT" "$ECHO_PORT" "$RECV_PORT" "$SMSC_PORT")
for ((i = 0; i < 2 * KAFKA_NODES; i++)); do ports+=("$((KAFKA_PORT + i))"); done # each node: PLAINTEXT, controller
[[ "$PROFILE" == 1 ]] && ports+=("${API_PPROF##*:}" "${PROC_PPROF##*:}")
for p in "${ports[@]}"; do
  port_free "$p" || die "port $p is in use (set BENCH_*_PORT)"
done

# val FILE KEY: the value of KEY=... in FILE (last one wins)
val() { awk -v k="$2" 'index($0, k "=") == 1 { v = substr($0, length(k) + 2) } END { print v }' "$1"; }
# vz FILE KEY: val, 0 when missing.
vz() { local v; v="$(val "$1" "$2")"; echo "${v:-0}"; }
# calc EXPR: float arithmetic
calc() { awk "BEGIN { OFMT = \"%.6f\"; print $* }"; }
# fmt_int N: 12345.6 -> 12,346
fmt_int() { awk -v n="$1" 'BEGIN { if (n == "" || n != n + 0) { print n; exit } s = sprintf("%.0f", n); neg = ""; if (s ~ /^-/) { neg = "-"; s = substr(s, 2) }
  o = ""; while (length(s) > 3) { o = "," substr(s, length(s) - 2) o; s = substr(s, 1, length(s) - 3) } print neg s o }'; }
fmt1() { awk -v n="$1" 'BEGIN { if (n == "" || n != n + 0) print n; else printf "%.1f", n }'; }
fmt2() { awk -v n="$1" 'BEGIN { if (n == "" || n != n + 0) print n; else printf "%.2f", n }'; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
vmhwm_mb() { awk '/^VmHWM:/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo "?"; }
vmrss_mb() { awk '/^VmRSS:/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo "?"; }

# ---------------------------------------------------------------- CPU accounting
# cpu_snap FILE [GEN_PID]: CPU ticks so far of each process of each party
# ("party pid ticks" lines), and the machine's from /proc/stat.
NCPU="$(nproc)"
ticks() { { awk '{ sub(/^.*\) /, ""); split($0, a, " "); print a[12] + a[13] }' "/proc/$1/stat"; } 2>/dev/null || echo 0; }
cpu_snap() {
  local file="$1" gen="${2:-}" pid cmd party
  {
    [[ -n "${API_PID:-}" ]] && echo "api $API_PID $(ticks "$API_PID")"
    [[ -n "${PROC_PID:-}" ]] && echo "processor $PROC_PID $(ticks "$PROC_PID")"
    [[ -n "${ECHO_PID:-}" ]] && echo "echo $ECHO_PID $(ticks "$ECHO_PID")"
    for pid in "${KAFKA_PIDS[@]+"${KAFKA_PIDS[@]}"}"; do echo "kafka $pid $(ticks "$pid")"; done # every broker: summed per party
    [[ -n "${SMSC_PID:-}" ]] && echo "smsc $SMSC_PID $(ticks "$SMSC_PID")"
    [[ -n "${RECV_PID:-}" ]] && echo "webhookrecv $RECV_PID $(ticks "$RECV_PID")"
    [[ -n "$gen" ]] && echo "generator $gen $(ticks "$gen")"
    for pid in $(pgrep -x postgres 2>/dev/null); do
      cmd="$( { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null || true)"
      if [[ "$cmd" == *" $DB_NAME "* ]]; then
        party=pg_bench
      elif [[ "$cmd" =~ ^postgres:\ [^:]+:\ [^\ ]+\ [^\ ]+\ [0-9\[] ]]; then
        party=pg_others # a backend of another database: other people's tests
      else
        party=pg_server # postmaster, WAL writer, checkpointer, autovacuum...
      fi
      echo "$party $pid $(ticks "$pid")"
    done
    awk '/^cpu / { print "busy 0", $2 + $3 + $4 + $7 + $8 + $9; print "irq 0", $7 + $8; print "all 0", $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat
    echo "time 0 $EPOCHREALTIME"
    # This database's commits and rows written so far (PostgreSQL flushes these at most once a second).
    # And the messages past PENDING (API counters), for CPU per message.
    [[ -n "${DB_URL:-}" ]] && psql "$DB_URL" -qAtF ' ' -c "SELECT xact_commit, tup_inserted, tup_updated, tup_deleted,
        (SELECT COALESCE(sum(sent + delivered + undelivered + failed + expired + canceled), 0) FROM sms.account_counters)
        FROM pg_stat_database WHERE datname = current_database()" 2>/dev/null |
      awk '{ print "pg_commits 0", $1; print "pg_inserted 0", $2; print "pg_updated 0", $3; print "pg_deleted 0", $4; print "final 0", $5 }'
  } >"$file"
}
# cpu_split A B: percent of one core used by each party between snapshots A
# and B. Processes that ended in between are lost to "others".
cpu_split() {
  awk -v ncpu="$NCPU" -v db="$DB_NAME" '
    FNR == NR { a[$1 " " $2] = $3; next }
    {
      d = $3 - (($1 " " $2) in a ? a[$1 " " $2] : 0)
      if (d < 0) d = 0
      if ($2 == 0) sys[$1] = d; else used[$1] += d
    }
    END {
      all = sys["all"]; if (all <= 0) all = 1
      wall = all / ncpu # /proc/stat sums over CPUs
      n = split("api processor kafka pg_bench pg_server smsc webhookrecv generator echo", k, " ")
      ours = 0
      for (i = 1; i <= n; i++) { ours += used[k[i]]; if (used[k[i]] > 0) printf "%s %.0f%%, ", k[i], 100 * used[k[i]] / wall }
      other = sys["busy"] - sys["irq"] - ours; if (other < 0) other = 0
      printf "kernel irq/softirq %.0f%%, **others %.0f%%**, idle %.0f%% | machine busy %.0f%% of %d cores",
        100 * sys["irq"] / wall, 100 * other / wall, 100 * (all - sys["busy"]) / wall, 100 * sys["busy"] / all, ncpu
      secs = sys["time"]
      if (secs > 0 && sys["pg_commits"] > 0)
        printf " | %s: %.0f commits/s, rows/s inserted %.0f, updated %.0f, deleted %.0f", db, sys["pg_commits"] / secs, sys["pg_inserted"] / secs, sys["pg_updated"] / secs, sys["pg_deleted"] / secs
    }' "$1" "$2"
}

# cpu_others A B: percent of one core used by processes the benchmark didn't start.
cpu_others() { cpu_split "$1" "$2" | sed -n 's/.*others \([0-9]*\)%.*/\1/p'; }

# api_ms_per_202 NAME: the API's CPU milliseconds per 202 of loadgen run NAME.
api_ms_per_202() {
  awk -v hz="$CLK_TCK" -v n="$(val "$OUT/loadgen-$1.txt" ok202)" 'FNR == NR { if ($1 == "api") a = $3; next } $1 == "api" { b = $3 }
    END { if (n > 0) printf "%.3f", 1000 * (b - a) / hz / n; else print "?" }' "$OUT/cpu-$1.0" "$OUT/cpu-$1.1"
}
# cpu_per_msg A B [IA IB]: CPU milliseconds of each party per message that
# left PENDING between the snapshots A and B (API counters); with idle
# snapshots IA and IB, the parties' idle CPU over as long is taken off first.
# With PER_RATE set (messages/s), per PER_RATE × the snapshots' wall time
# instead (e.g. wrk's accepted/s: per accepted message).
CLK_TCK="$(getconf CLK_TCK 2>/dev/null || echo 100)"
cpu_per_msg() {
  [[ -f "$1" && -f "$2" ]] || { echo "?"; return; }
  local ia="${3:-/dev/null}" ib="${4:-/dev/null}"
  [[ -f "$ia" && -f "$ib" ]] || { ia=/dev/null ib=/dev/null; }
  awk -v hz="$CLK_TCK" -v rate="${PER_RATE:-}" '
    # delta(file pair) per party, and the pair'"'"'s wall time
    FILENAME == ARGV[1] { a[$1 " " $2] = $3; next }
    FILENAME == ARGV[2] {
      d = $3 - (($1 " " $2) in a ? a[$1 " " $2] : 0); if (d < 0) d = 0
      if ($2 == 0) sys[$1] = d; else used[$1] += d
      next
    }
    FILENAME == ARGV[3] { ia[$1 " " $2] = $3; next }
    FILENAME == ARGV[4] {
      d = $3 - (($1 " " $2) in ia ? ia[$1 " " $2] : 0); if (d < 0) d = 0
      if ($2 == 0) isys[$1] = d; else idle[$1] += d
    }
    END {
      n = (rate != "") ? rate * sys["time"] : sys["final"]
      if (n <= 0) { print (rate != "" ? "no message" : "no message left PENDING"); exit }
      f = (isys["time"] > 0) ? sys["time"] / isys["time"] : 0
      k = split("api processor kafka pg_bench pg_server smsc", p, " ")
      t = 0
      for (i = 1; i <= k; i++) {
        u = used[p[i]] - f * idle[p[i]]; if (u < 0) u = 0
        ms = 1000 * u / hz / n; t += ms
        if (used[p[i]] > 0) printf "%s %.3f, ", p[i], ms
      }
      printf "**total %.3f ms** per message (%d messages%s)", t, n, (f > 0 ? sprintf("; idle CPU over %.0f s taken off", sys["time"]) : "")
    }' "$1" "$2" "$ia" "$ib"
}

# ---------------------------------------------------------------- PostgreSQL

log "PostgreSQL: scripts/postgres.sh"
BASE_URL="$("$ROOT/scripts/postgres.sh" 2>"$OUT/postgres-script.log")" || { cat "$OUT/postgres-script.log" >&2; die "scripts/postgres.sh failed"; }
[[ "$BASE_URL" =~ ^(postgres(ql)?://[^/]+/)([^?]*)(\?.*)?$ ]] || die "unexpected database URL from scripts/postgres.sh"
DB_URL="${BASH_REMATCH[1]}$DB_NAME${BASH_REMATCH[4]}"
# Not WITH (FORCE): that refuses when an autovacuum worker (the superuser's)
# is busy on the database, as after a previous run. A plain DROP stops
# autovacuum itself; our own role's leftover connections are ended first.
dropped=""
for _ in 1 2 3 4 5 6 7 8 9 10; do
  psql "$BASE_URL" -qAtc "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
      WHERE datname = '$DB_NAME' AND usename = current_user AND pid <> pg_backend_pid()" >/dev/null 2>&1 || true
  if psql "$BASE_URL" -v ON_ERROR_STOP=1 -qAtc "DROP DATABASE IF EXISTS $DB_NAME" >"$OUT/dropdb.log" 2>&1; then
    dropped=1
    break
  fi
  sleep 1
done
[[ -n "$dropped" ]] || { cat "$OUT/dropdb.log" >&2; die "cannot drop database $DB_NAME (it must belong to the role in $BASE_URL)"; }
psql "$BASE_URL" -v ON_ERROR_STOP=1 -qAtc "CREATE DATABASE $DB_NAME" >/dev/null || die "cannot create database $DB_NAME"
IFS='|' read -r PG_SYNC PG_FSYNC PG_VERSION PG_FPW PG_WALSYNC < <(psql "$DB_URL" -qAtc \
  "SELECT current_setting('synchronous_commit'), current_setting('fsync'), current_setting('server_version'), current_setting('full_page_writes'), current_setting('wal_sync_method')")
log "PostgreSQL $PG_VERSION: synchronous_commit=$PG_SYNC fsync=$PG_FSYNC (database $DB_NAME recreated)"
if [[ "$PG_SYNC" != on || "$PG_FSYNC" != on ]]; then
  [[ "${BENCH_ALLOW_UNSAFE_PG:-0}" == 1 ]] || die "PostgreSQL must run with synchronous_commit=on and fsync=on (got $PG_SYNC/$PG_FSYNC); a 202 must mean committed"
  STATUS_NOTES+=("**PostgreSQL durability settings are off (synchronous_commit=$PG_SYNC, fsync=$PG_FSYNC): figures are not valid.**")
fi
# A session may still turn durability off for itself; say so if the code does.
if grep -rIl --include='*.go' --exclude='*_test.go' -i 'synchronous_commit' sms processor platform cmd config >/dev/null 2>&1; then
  STATUS_NOTES+=("Warning: the Go sources mention synchronous_commit: $(grep -rIl --include='*.go' --exclude='*_test.go' -i synchronous_commit sms processor platform cmd config | tr '\n' ' ')")
fi

# ---------------------------------------------------------------- Kafka

if ((KAFKA_NODES > 1)); then
  log "Kafka: SMS_KAFKA_NODES=$KAFKA_NODES scripts/kafka.sh start, a $KAFKA_NODES-broker KRaft cluster (state $KAFKA_STATE/node-N, ports $KAFKA_PORT-$((KAFKA_PORT + 2 * KAFKA_NODES - 1)))"
else
  log "Kafka: scripts/kafka.sh start (state $KAFKA_STATE, port $KAFKA_PORT)"
fi
kafka clean >/dev/null 2>"$OUT/kafka-script.log" || true # a broker left by an interrupted run
KAFKA_STARTED=1
BROKERS="$(kafka start 2>>"$OUT/kafka-script.log")" || { tail -n 20 "$OUT/kafka-script.log" >&2; die "the Kafka broker did not start"; }
KAFKA_PIDS=()
if ((KAFKA_NODES > 1)); then
  for ((i = 1; i <= KAFKA_NODES; i++)); do KAFKA_PIDS+=("$(cat "$KAFKA_STATE/node-$i/kafka.pid")"); done
else
  KAFKA_PIDS=("$(cat "$KAFKA_STATE/kafka.pid")")
fi
for pid in "${KAFKA_PIDS[@]}"; do alive "$pid" || die "Kafka broker pid $pid (from $KAFKA_STATE) is not running"; done
KAFKA_VERSION="$(ls "${SMS_KAFKA_HOME:-${HOME:-/tmp}/.cache/smsctl}" 2>/dev/null | sed -n 's/^kafka-//p' | sort -V | tail -1)"
log "Kafka ${KAFKA_VERSION:-?} on $BROKERS (pid ${KAFKA_PIDS[*]})"
# A cold broker spends several times more CPU per record until its JIT has
# compiled the produce and fetch paths; measure it warm, as it runs in production.
log "warming the broker up: $KAFKA_WARMUP of produce and fetch on a scratch topic"
fg_run "$LOADGEN" warmkafka -brokers "$BROKERS" -duration "$KAFKA_WARMUP" >"$OUT/kafka-warmup.txt" 2>>"$OUT/loadgen.log" \
  || die "the Kafka warm-up failed (see $OUT/loadgen.log)"

# ---------------------------------------------------------------- smsctl

# Both roles get the user's SMS_* settings, then the benchmark's own.
export SMS_DATABASE_URL="$DB_URL"
export SMS_KAFKA_BROKERS="$BROKERS"
SMS_INTERNAL_TOKEN="bench-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export SMS_INTERNAL_TOKEN
export SMS_LOG_LEVEL=warn SMS_LOG_FORMAT=json
unset SMS_PROCESSOR_DATABASE_URL SMS_CONFIG
if ((KAFKA_NODES > 1)); then
  # Cluster mode: the API creates its topics replicated on the brokers.
  export SMS_KAFKA_REPLICATION_FACTOR="$KAFKA_RF" SMS_KAFKA_MIN_INSYNC_REPLICAS="$KAFKA_MIN_ISR"
  own_kafka='|KAFKA_(REPLICATION_FACTOR|MIN_INSYNC_REPLICAS)'
else
  own_kafka=''
fi
USER_OVERRIDES="$(env | grep -E '^SMS_' | grep -vE "^SMS_(TEST_[A-Z_]*|DATABASE_URL|KAFKA_BROKERS|INTERNAL_TOKEN|LOG_LEVEL|LOG_FORMAT|API_KEY|KAFKA_(STATE|PORT|HOME|JVM_OPTS|HEAP_OPTS|VERSION|NODES)$own_kafka)=" | sort | tr '\n' ' ' || true)"

log "smsctl migrate up"
"$ROLE_BIN" migrate up >"$OUT/migrate.log" 2>&1 || { cat "$OUT/migrate.log" >&2; die "migrate up failed"; }
API_KEY="$("$ROLE_BIN" apikey create --account bench 2>"$OUT/apikey.log" | tail -n 1)" || die "apikey create failed (see $OUT/apikey.log)"
[[ "$API_KEY" == sms_* ]] || die "unexpected API key output (see $OUT/apikey.log)"
export BENCH_API_KEY="$API_KEY"

API_URL="http://127.0.0.1:$API_PORT"
PROC_URL="http://127.0.0.1:$PROC_PORT"

start_api() {
  local t0
  t0="$EPOCHREALTIME"
  start_bg api "$OUT/api.log" env SMS_HTTP_ADDR="127.0.0.1:$API_PORT" SMS_RATE_LIMIT=1000000000 SMS_RATE_BURST=1000000000 \
    SMS_WEBHOOK_ALLOW_PRIVATE=true SMS_WEBHOOK_PER_ENDPOINT="$WEBHOOK_PER_ENDPOINT" \
    BENCH_PPROF_ADDR="$( [[ "$PROFILE" == 1 ]] && echo "$API_PPROF")" "$ROLE_BIN" serve api
  API_PID=$LAST_PID
  fg_run "$LOADGEN" waitready -url "$API_URL/readyz" -since "$t0" -interval 5ms -timeout 60s -pid "$API_PID" >"$OUT/api-ready.txt" \
    || { tail -n 20 "$OUT/api.log" >&2; die "serve api did not become ready"; }
  API_READY_MS="$(val "$OUT/api-ready.txt" ready_ms)"
}

# start_processor NAME [env...]: serve processor with extra settings.
start_processor() {
  local name="$1" t0
  shift
  t0="$EPOCHREALTIME"
  start_bg "processor" "$OUT/$name.log" env SMS_API_URL="$API_URL" SMS_PROCESSOR_HTTP_ADDR="127.0.0.1:$PROC_PORT" SMS_MAX_IN_FLIGHT="$MAX_IN_FLIGHT" "$@" \
    BENCH_PPROF_ADDR="$( [[ "$PROFILE" == 1 ]] && echo "$PROC_PPROF")" "$ROLE_BIN" serve processor
  PROC_PID=$LAST_PID
  fg_run "$LOADGEN" waitready -url "$PROC_URL/readyz" -since "$t0" -interval 5ms -timeout 90s -pid "$PROC_PID" >"$OUT/$name-ready.txt" \
    || { tail -n 20 "$OUT/$name.log" >&2; die "serve processor ($name) did not become ready"; }
  PROC_READY_MS="$(val "$OUT/$name-ready.txt" ready_ms)"
}

check_alive() {
  alive "$API_PID" || { tail -n 30 "$OUT/api.log" >&2; die "serve api died (log: $OUT/api.log)"; }
  [[ -z "$PROC_PID" ]] || alive "$PROC_PID" || { tail -n 30 "$OUT/$PROC_NAME.log" >&2; die "serve processor died (log: $OUT/$PROC_NAME.log)"; }
}

# drain NAME: wait until every stored message is final; the seconds go to DRAIN_S.
drain() {
  fg_run "$LOADGEN" drain -db "$DB_URL" -timeout "$DRAIN_TIMEOUT" >"$OUT/drain-$1.txt" 2>>"$OUT/loadgen.log" || die "drain after $1 failed"
  DRAIN_S="$(val "$OUT/drain-$1.txt" drain_s)"
  if [[ "$(val "$OUT/drain-$1.txt" drained)" != true ]]; then
    STATUS_NOTES+=("Backlog not drained within $DRAIN_TIMEOUT after $1: $(val "$OUT/drain-$1.txt" pending) messages still PENDING.")
  fi
}

# profile_start NAME SECONDS: CPU profiles of both roles while a phase runs.
PROF_PIDS=()
profile_start() {
  [[ "$PROFILE" == 1 && "$1" != echo* && "$1" != *warmup ]] || return 0
  local secs
  secs="$(awk -v s="$2" 'BEGIN { s = int(s - 1); print (s < 1 ? 1 : s) }')"
  curl -sf -o "$OUT/$1-api.pprof" "http://$API_PPROF/debug/pprof/profile?seconds=$secs" &
  PROF_PIDS+=($!)
  if [[ -n "$PROC_PID" ]]; then
    curl -sf -o "$OUT/$1-processor.pprof" "http://$PROC_PPROF/debug/pprof/profile?seconds=$secs" &
    PROF_PIDS+=($!)
  fi
  # Where time is spent waiting (channels, locks) over the same window.
  curl -sf -o "$OUT/$1-api.block.pprof" "http://$API_PPROF/debug/pprof/block?seconds=$secs" &
  PROF_PIDS+=($!)
  curl -sf -o "$OUT/$1-api.mutex.pprof" "http://$API_PPROF/debug/pprof/mutex?seconds=$secs" &
  PROF_PIDS+=($!)
  # Where the goroutines wait, half-way through (what CPU profiles don't show).
  (sleep "$(calc "$secs / 2")"
   curl -sf -o "$OUT/$1-api.goroutines.txt" "http://$API_PPROF/debug/pprof/goroutine?debug=1"
   [[ -z "$PROC_PID" ]] || curl -sf -o "$OUT/$1-processor.goroutines.txt" "http://$PROC_PPROF/debug/pprof/goroutine?debug=1") &
  PROF_PIDS+=($!)
  PROF_NAME="$1"
}
profile_end() {
  [[ ${#PROF_PIDS[@]} -gt 0 ]] || return 0
  local p f
  for p in "${PROF_PIDS[@]}"; do wait "$p" || log "a CPU profile of $PROF_NAME failed"; done
  PROF_PIDS=()
  for f in "$OUT/$PROF_NAME-api.pprof" "$OUT/$PROF_NAME-processor.pprof" "$OUT/$PROF_NAME-api.block.pprof" "$OUT/$PROF_NAME-api.mutex.pprof"; do
    [[ -s "$f" ]] && go tool pprof -top -nodecount=40 "$ROLE_BIN" "$f" >"${f%.pprof}.top.txt" 2>/dev/null || true
  done
  PROFILES_TAKEN=1
}

# wrk_run NAME SENDER DURATION URL: wrk in the background while CPU is
# accounted. WRK_KEY, WRK_SCRIPT, WRK_PATH and WRK_C change the API key,
# the script, the route and the connections.
wrk_run() {
  local name="$1" sender="$2" dur="$3" url="$4" secs pid
  secs="$(seconds "$dur")"
  BENCH_SENDER="$sender" BENCH_API_KEY="${WRK_KEY:-$API_KEY}" wrk -t"$WRK_THREADS" -c"${WRK_C:-$WRK_CONNS}" -d"$dur" --latency \
    -s "${WRK_SCRIPT:-$ROOT/bench/post.lua}" "$url${WRK_PATH:-/v1/messages}" >"$OUT/wrk-$name.txt" 2>&1 &
  pid=$!
  NAME_OF[$pid]="wrk"
  PIDS+=("$pid")
  cpu_snap "$OUT/cpu-$name.0" "$pid"
  profile_start "$name" "$secs"
  nap "$(calc "$secs - 0.3")"
  cpu_snap "$OUT/cpu-$name.1" "$pid"
  profile_end
  # The API's metrics after the phase (cumulative): writer batch times and sizes, relay, HTTP.
  [[ "$url" == "$API_URL" ]] && { curl -sf -o "$OUT/metrics-api-$name.txt" "$API_URL/metrics" || true; }
  wait "$pid" || { cat "$OUT/wrk-$name.txt" >&2; die "wrk ($name) failed"; }
  forget_pid "$pid"
  grep -q '^WRK ' "$OUT/wrk-$name.txt" || { cat "$OUT/wrk-$name.txt" >&2; die "wrk ($name) printed no summary"; }
  sed -n 's/^WRK //p' "$OUT/wrk-$name.txt" | tr ' ' '\n' >"$OUT/wrk-$name.kv"
}
# wrk_ok NAME: 2xx answers (wrk counts non-2xx/3xx as status errors).
wrk_ok() { calc "$(val "$OUT/wrk-$1.kv" requests) - $(val "$OUT/wrk-$1.kv" status)"; }
wrk_rps() { calc "$(wrk_ok "$1") / ($(val "$OUT/wrk-$1.kv" duration_us) / 1000000)"; }
wrk_sockerr() { calc "$(val "$OUT/wrk-$1.kv" connect) + $(val "$OUT/wrk-$1.kv" read) + $(val "$OUT/wrk-$1.kv" write) + $(val "$OUT/wrk-$1.kv" timeout)"; }

# loadgen_run NAME SENDER RATE DURATION WARMUP URL [extra flags]
loadgen_run() {
  local name="$1" sender="$2" rate="$3" dur="$4" warm="$5" url="$6" secs pid
  shift 6
  secs="$(seconds "$dur")"
  GOMAXPROCS="$LOADGEN_PROCS" "$LOADGEN" run -url "$url/v1/messages" -rate "$rate" -duration "$dur" -warmup "$warm" \
    -conns "$LOADGEN_CONNS" -client "$LOADGEN_CLIENT" -timeout "$REQUEST_TIMEOUT" -sender "$sender" -recipient-offset "$((RANDOM * 30))" "$@" >"$OUT/loadgen-$name.txt" 2>>"$OUT/loadgen.log" &
  pid=$!
  NAME_OF[$pid]="loadgen"
  PIDS+=("$pid")
  cpu_snap "$OUT/cpu-$name.0" "$pid"
  profile_start "$name" "$secs"
  nap "$(calc "$secs - 0.3")"
  cpu_snap "$OUT/cpu-$name.1" "$pid"
  profile_end
  wait "$pid" || { tail -n 20 "$OUT/loadgen.log" >&2; die "loadgen ($name) failed"; }
  forget_pid "$pid"
}

# ---------------------------------------------------------------- run

# Start-to-ready of serve api: the median of READY_SAMPLES starts (the last one stays up).
READY_LIST=()
for ((i = 1; i < READY_SAMPLES; i++)); do
  start_api
  READY_LIST+=("$API_READY_MS")
  stop_pid "$API_PID" 30
  [[ "$STOP_RC" == 0 ]] || die "serve api exited with status $STOP_RC after SIGTERM at start-up (log: $OUT/api.log)"
  mv "$OUT/api.log" "$OUT/api-start$i.log"
done
start_api
READY_LIST+=("$API_READY_MS")
API_READY_MS="$(printf '%s\n' "${READY_LIST[@]}" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')"
log "serve api ready in ${READY_LIST[*]} ms (median $API_READY_MS; pid $API_PID)"
# How the API's topics are replicated (it creates them at start-up).
fg_run "$LOADGEN" topics -brokers "$BROKERS" -wait 60s >"$OUT/kafka-topics.txt" 2>>"$OUT/loadgen.log" \
  || die "the API's topics did not appear in Kafka (see $OUT/loadgen.log, $OUT/api.log)"
TOPIC_BROKERS="$(val "$OUT/kafka-topics.txt" brokers)"
TOPIC_RF="$(val "$OUT/kafka-topics.txt" replication_min)"
TOPIC_ISR="$(val "$OUT/kafka-topics.txt" isr_min)"
TOPIC_MIN_ISR="$(val "$OUT/kafka-topics.txt" min_insync)"
log "Kafka topics: $TOPIC_BROKERS brokers, replication factor $TOPIC_RF, in sync $TOPIC_ISR, min.insync.replicas $TOPIC_MIN_ISR"
if ((KAFKA_NODES > 1)); then
  [[ "$TOPIC_BROKERS" == "$KAFKA_NODES" && "$TOPIC_RF" == "$KAFKA_RF" && "$TOPIC_ISR" == "$KAFKA_RF" && "$TOPIC_MIN_ISR" == "$KAFKA_MIN_ISR" ]] \
    || die "cluster mode wants $KAFKA_NODES brokers, topics with RF $KAFKA_RF all in sync, min.insync.replicas $KAFKA_MIN_ISR; got $(tr '\n' ' ' <"$OUT/kafka-topics.txt")"
fi
PROC_NAME=processor-delay0
PROC_PID=""
LOAD_BEFORE="$(loadavg)"

# Phase 0: the baseline, same wrk command, same kind of address.
log "phase 0: baseline echo server"
ECHO_URL="http://127.0.0.1:$ECHO_PORT"
t0="$EPOCHREALTIME"
start_bg echo "$OUT/echo.log" "$TOOLS/echo" -addr "127.0.0.1:$ECHO_PORT"
ECHO_PID=$LAST_PID
"$LOADGEN" waitready -url "$ECHO_URL/readyz" -since "$t0" -pid "$ECHO_PID" >/dev/null || die "the echo server did not start"
wrk_run echo-warmup +14155550199 "$WRK_WARMUP" "$ECHO_URL"
LOAD_BASE="$(loadavg)"
wrk_run echo +14155550199 "$BASELINE" "$ECHO_URL"
BASE_RPS="$(wrk_rps echo)"
log "baseline: $(fmt_int "$BASE_RPS") POST/s (load average $LOAD_BASE)"
if [[ "${BENCH_SKIP_BASELINE_LATENCY:-0}" != 1 ]]; then
  loadgen_run echo-latency +14155550199 "$LATENCY_RATE" "$(calc "$(seconds "$LATENCY") + 2")s" "$LATENCY_WARMUP" "$ECHO_URL"
  log "baseline latency at ${LATENCY_RATE}/s: p50 $(val "$OUT/loadgen-echo-latency.txt" p50_ms) ms, p99 $(val "$OUT/loadgen-echo-latency.txt" p99_ms) ms"
fi
stop_pid "$ECHO_PID" 10
ECHO_PID=""

# Phase 1: saturation; first the API alone: its work waits in Kafka.
log "phase 1: saturation, wrk -t$WRK_THREADS -c$WRK_CONNS for $SATURATION, API alone (processor not started)"
wrk_run api-warmup +14155550100 "$WRK_WARMUP" "$API_URL"
check_alive
LOAD_SAT_API="$(loadavg)"
wrk_run saturation-api +14155550105 "$SATURATION" "$API_URL"
check_alive
SAT_API_RPS="$(wrk_rps saturation-api)"
API_RSS_SAT="$(vmhwm_mb "$API_PID")"
log "saturation, API alone: $(fmt_int "$SAT_API_RPS") accepted/s, $(val "$OUT/wrk-saturation-api.kv" status) non-2xx"
start_processor "$PROC_NAME" SMS_SIM_MIN_DELAY=0s SMS_SIM_MAX_DELAY=0s SMS_SIM_FAILURE_RATE=0.1
PROC1_READY_MS="$PROC_READY_MS"
log "serve processor (delay 0, 10% failures) ready in ${PROC_READY_MS} ms (pid $PROC_PID); draining the backlog"
drain saturation-api
DRAIN0="$DRAIN_S"
log "backlog drained in ${DRAIN0}s; phase 1 again with the processor running"
LOAD_SAT="$(loadavg)"
wrk_run saturation +14155550101 "$SATURATION" "$API_URL"
check_alive
SAT_RPS="$(wrk_rps saturation)"
log "saturation: $(fmt_int "$SAT_RPS") accepted/s, $(val "$OUT/wrk-saturation.kv" status) non-2xx; draining the backlog"
drain saturation
DRAIN1="$DRAIN_S"
log "backlog drained in ${DRAIN1}s"

# Phase 2: latency at a constant offered rate.
log "phase 2: open-loop latency at ${LATENCY_RATE}/s for $LATENCY"
LOAD_LAT="$(loadavg)"
loadgen_run latency +14155550102 "$LATENCY_RATE" "$(calc "$(seconds "$LATENCY") + 2")s" "$LATENCY_WARMUP" "$API_URL"
check_alive
L="$OUT/loadgen-latency.txt"
log "latency: p50 $(val "$L" p50_ms) ms, p99 $(val "$L" p99_ms) ms, p99.9 $(val "$L" p999_ms) ms; non-202 $(val "$L" non202), errors $(val "$L" transport_errors)"
drain latency
DRAIN2="$DRAIN_S"

# auto: 90% of what the API accepted at saturation, in thousands.
if [[ "$E2E_RATE" == auto ]]; then E2E_RATE="$(awk -v r="$SAT_RPS" 'BEGIN { x = int(r * 0.9 / 1000) * 1000; print (x < 1000 ? 1000 : x) }')"; fi
if [[ "$SIM_RATE" == auto ]]; then SIM_RATE="$(awk -v r="$SAT_RPS" 'BEGIN { x = int(r * 0.9 / 1000) * 1000; print (x < 1000 ? 1000 : x) }')"; fi
# Phase 10 repeats phase 3 with a webhook endpoint: same offered rate unless set.
if [[ -z "$WEBHOOK_RATE" ]]; then WEBHOOK_RATE="$E2E_RATE"; fi
if [[ "$WEBHOOK_RATE" == auto ]]; then WEBHOOK_RATE="$(awk -v r="$SAT_RPS" 'BEGIN { x = int(r * 0.9 / 1000) * 1000; print (x < 1000 ? 1000 : x) }')"; fi

# Phase 3: end to end, delay 0, 10% failures.
E2E_TOTAL="$(calc "$(seconds "$E2E") + $(seconds "$E2E_WARMUP")")s"
log "phase 3: end to end at ${E2E_RATE}/s offered for $E2E (+$E2E_WARMUP warm-up), simulation delay 0, 10% failures"
LOAD_E2E="$(loadavg)"
loadgen_run e2e +14155550103 "$E2E_RATE" "$E2E_TOTAL" "$E2E_WARMUP" "$API_URL" \
  -db "$DB_URL" -brokers "$BROKERS" -inflight-url "$PROC_URL/metrics" -api-metrics-url "$API_URL/metrics" -samples "$OUT/samples-e2e.csv"
check_alive
E="$OUT/loadgen-e2e.txt"
log "end to end: $(fmt_int "$(val "$E" final_rps_window)") final/s, lag $(val "$E" lag_start) -> $(val "$E" lag_end)"
drain e2e
DRAIN3="$DRAIN_S"
PROC1_HWM="$(vmhwm_mb "$PROC_PID")"
stop_pid "$PROC_PID" 30
PROC1_RC=$STOP_RC
[[ "$PROC1_RC" == 0 ]] || STATUS_NOTES+=("serve processor (delay 0) exited with status $PROC1_RC after SIGTERM (log: $OUT/$PROC_NAME.log).")

# Phase 4: the default simulation.
PROC_NAME=processor-default
start_processor "$PROC_NAME" SMS_SIM_FAILURE_RATE=0.1
PROC2_READY_MS="$PROC_READY_MS"
SIM_TOTAL="$(calc "$(seconds "$SIM") + $(seconds "$SIM_WARMUP")")s"
log "phase 4: default simulation (1-3 s) at ${SIM_RATE}/s offered for $SIM (+$SIM_WARMUP warm-up)"
LOAD_SIM="$(loadavg)"
loadgen_run sim +14155550104 "$SIM_RATE" "$SIM_TOTAL" "$SIM_WARMUP" "$API_URL" \
  -db "$DB_URL" -brokers "$BROKERS" -inflight-url "$PROC_URL/metrics" -api-metrics-url "$API_URL/metrics" -samples "$OUT/samples-sim.csv"
check_alive
S="$OUT/loadgen-sim.txt"
log "default simulation: $(fmt_int "$(val "$S" final_rps_window)") final/s, in flight avg $(fmt_int "$(val "$S" in_flight_avg)") max $(fmt_int "$(val "$S" in_flight_max)")"

# Phase 6 (first part): the backlog of the first phases drains.
log "drain after phase 4 (up to $DRAIN_TIMEOUT)"
drain final
DRAIN4="$DRAIN_S"
LOAD_AFTER="$(loadavg)"
"$LOADGEN" lag -brokers "$BROKERS" >"$OUT/lag-final.txt" 2>>"$OUT/loadgen.log" || true
PROC2_HWM="$(vmhwm_mb "$PROC_PID")"
API_HWM="$(vmhwm_mb "$API_PID")"
stop_pid "$PROC_PID" 30
PROC2_RC=$STOP_RC
[[ "$PROC2_RC" == 0 ]] || STATUS_NOTES+=("serve processor exited with status $PROC2_RC after SIGTERM (log: $OUT/$PROC_NAME.log).")
PROC_PID=""

# ---------------------------------------------------------------- wave 2 phases (issues 13-16)
# Each starts the processes it needs and stops them again, leaves no
# webhook endpoint behind, and drains before the next one.

skipped() { [[ " $SKIP " == *" $1 "* ]]; }
# stop_processor: SIGTERM to the running processor; a bad exit is noted.
stop_processor() {
  [[ -n "$PROC_PID" ]] || return 0
  stop_pid "$PROC_PID" 30
  [[ "$STOP_RC" == 0 ]] || STATUS_NOTES+=("serve processor ($PROC_NAME) exited with status $STOP_RC after SIGTERM (log: $OUT/$PROC_NAME.log).")
  PROC_PID=""
}
# api_call METHOD PATH [JSON]: the API's answer on stdout; fails on a non-2xx.
api_call() {
  curl -sS -f -X "$1" -H "Authorization: Bearer $API_KEY" ${3:+-H 'Content-Type: application/json' --data "$3"} "$API_URL$2"
}
outbox_sql="SELECT COALESCE(sum(cardinality(message_ids)), 0)::bigint FROM sms.outbox"
# Inbound messages go to a number of the benchmark's account.
inbound_sql="SELECT count(*) FROM sms.inbound_messages WHERE recipient = '$INBOUND_TO'"
MO_PIDS=()
INBOUND_READY=0
inbound_setup() {
  [[ "$INBOUND_READY" == 0 ]] || return 0
  "$ROLE_BIN" number add --account bench "$INBOUND_TO" >>"$OUT/number.log" 2>&1 || { cat "$OUT/number.log" >&2; die "smsctl number add failed"; }
  INBOUND_READY=1
}
# batch_run NAME SENDER SIZE SECONDS [flags]: loadgen batch, CPU accounted
# (over SECONDS when it runs for a duration, else until it ends).
batch_run() {
  local name="$1" sender="$2" size="$3" secs="$4" pid
  shift 4
  GOMAXPROCS="$LOADGEN_PROCS" "$LOADGEN" batch -url "$API_URL/v1/messages/batch" -size "$size" -conns "$BATCH_CONNS" -sender "$sender" \
    -recipient-offset "$((RANDOM * 30))" "$@" >"$OUT/batch-$name.txt" 2>>"$OUT/loadgen.log" &
  pid=$!
  NAME_OF[$pid]="loadgen batch"
  PIDS+=("$pid")
  cpu_snap "$OUT/cpu-$name.0" "$pid"
  if [[ "$secs" != 0 ]]; then
    nap "$(calc "$secs - 0.3")"
    cpu_snap "$OUT/cpu-$name.1" "$pid"
  fi
  wait "$pid" || { tail -n 20 "$OUT/loadgen.log" >&2; die "loadgen batch ($name) failed"; }
  forget_pid "$pid"
  [[ "$secs" != 0 ]] || cpu_snap "$OUT/cpu-$name.1"
}

# Phase 7: batch ingestion, API alone (as the first half of phase 1).
if ! skipped batch; then
  log "phase 7: POST /v1/messages/batch, $BATCH_CONNS connections, closed loop, batches of 100 then 1,000 for $BATCH each (+$WRK_WARMUP warm-up), API alone"
  BATCH_TOTAL="$(calc "$(seconds "$BATCH") + $(seconds "$WRK_WARMUP")")s"
  LOAD_BATCH="$(loadavg)"
  batch_run batch100 +14155550106 100 "$(seconds "$BATCH_TOTAL")" -duration "$BATCH_TOTAL" -warmup "$WRK_WARMUP"
  check_alive
  batch_run batch1000 +14155550107 1000 "$(seconds "$BATCH_TOTAL")" -duration "$BATCH_TOTAL" -warmup "$WRK_WARMUP"
  check_alive
  log "batch: $(fmt_int "$(val "$OUT/batch-batch100.txt" accepted_rps_window)") messages/s in batches of 100, $(fmt_int "$(val "$OUT/batch-batch1000.txt" accepted_rps_window)")/s in batches of 1,000"
  PROC_NAME=processor-batch
  start_processor "$PROC_NAME" SMS_SIM_MIN_DELAY=0s SMS_SIM_MAX_DELAY=0s SMS_SIM_FAILURE_RATE=0.1
  drain batch
  DRAIN_BATCH="$DRAIN_S"
  log "batch backlog drained in ${DRAIN_BATCH}s"
  stop_processor
fi

# Phase 8: priority. A backlog of low-priority messages waits in Kafka
# (the processor is stopped while it is built), then the processor starts
# with the default 1-3 s simulation and, once it is busy with the backlog,
# a high, a normal and a low message are posted at the same instant, in
# PRIO_ROUNDS rounds a second apart, and each is followed until the carrier
# took it (SENT). The simulator sends no receipts in this phase (and the
# next): SENT is final then. (With receipts, a message's receipt queues
# behind the backlog's in the simulator, which sends them one at a time:
# that would time the receipts, not the lanes.)
if ! skipped priority; then
  log "phase 8: priority: $(fmt_int "$PRIO_BACKLOG") low-priority messages in batches of 1,000 (processor stopped)"
  batch_run prio-backlog +14155550108 1000 0 -count "$PRIO_BACKLOG" -priority low
  fg_run "$LOADGEN" waitsql -db "$DB_URL" -sql "$outbox_sql" -max 0 -timeout "$DRAIN_TIMEOUT" >"$OUT/prio-outbox.txt" 2>>"$OUT/loadgen.log" || die "waiting for the outbox failed"
  PROC_NAME=processor-priority
  start_processor "$PROC_NAME" SMS_SIM_FAILURE_RATE=0.1 SMS_SIM_RECEIPTS=false
  # Busy: deliveries in flight (the backlog is being worked on), then track.
  for ((i = 0; i < 300; i++)); do
    v="$(curl -sf "$PROC_URL/metrics" | awk '/^sms_processor_in_flight / { print int($2) }')" || true
    ((${v:-0} >= 1000)) && break
    nap 0.1
  done
  log "priority: processor busy ($v in flight); posting high, normal and low messages, $PRIO_ROUNDS rounds"
  LOAD_PRIO="$(loadavg)"
  cpu_snap "$OUT/cpu-priority.0"
  fg_run "$LOADGEN" track -url "$API_URL" -rounds "$PRIO_ROUNDS" -every 1s -until sent -sender +14155550109 -db "$DB_URL" -brokers "$BROKERS" \
    -processor-metrics "$PROC_URL/metrics" -timeout "$DRAIN_TIMEOUT" >"$OUT/priority.txt" 2>>"$OUT/loadgen.log" || die "loadgen track failed"
  cpu_snap "$OUT/cpu-priority.1"
  P="$OUT/priority.txt"
  log "priority: SENT after: high $(val "$P" high_sent_ms_median) ms (median; max $(val "$P" high_sent_ms_max)), normal $(val "$P" normal_sent_ms_median) ms, low $(val "$P" low_sent_ms_median) ms; backlog: low lag $(val "$P" backlog_lag_low), in flight $(val "$P" backlog_in_flight)"
  drain priority
  DRAIN_PRIO="$DRAIN_S"
  check_alive
fi

# Phase 9: the scheduler. SCHED_COUNT messages scheduled for the same
# second, a little ahead (long enough to insert them in batches of 1,000);
# the processor (default simulation) keeps running. Measured: from that
# second until none is SCHEDULED (stats by_status), and until none is
# PENDING; POST latency at SCHED_RATE/s open loop meanwhile, against the same
# generator a moment before (quiet).
if ! skipped scheduler; then
  if [[ -z "$PROC_PID" ]]; then
    PROC_NAME=processor-scheduler
    start_processor "$PROC_NAME" SMS_SIM_FAILURE_RATE=0.1 SMS_SIM_RECEIPTS=false
  fi
  log "phase 9: scheduler: POST latency at ${SCHED_RATE}/s, quiet, for $SCHED_QUIET"
  loadgen_run sched-quiet +14155550111 "$SCHED_RATE" "$(calc "$(seconds "$SCHED_QUIET") + 1")s" 1s "$API_URL"
  check_alive
  # Lead: the insert at the batch figure (or 5,000/s), doubled, plus 3 s.
  rate_b="$(val "$OUT/batch-batch1000.txt" accepted_rps_window 2>/dev/null || true)"
  lead="$(awk -v n="$SCHED_COUNT" -v r="${rate_b:-0}" 'BEGIN { if (r < 5000) r = 5000; printf "%d", 2 * n / r + 3 }')"
  SEND_AT="$(date -u -d "@$(($(date +%s) + lead))" +%Y-%m-%dT%H:%M:%SZ)"
  log "scheduler: $(fmt_int "$SCHED_COUNT") messages scheduled for $SEND_AT (in ${lead}s), batches of 1,000"
  batch_run sched +14155550110 1000 0 -count "$SCHED_COUNT" -send-at "$SEND_AT"
  due_epoch="$(date -u -d "$SEND_AT" +%s)"
  SCHED_OVERRUN=0
  (($(date +%s) < due_epoch)) || SCHED_OVERRUN=1
  start_bg "loadgen sched" "$OUT/sched-watch.log" sh -c "exec \"$LOADGEN\" sched -url \"$API_URL\" -at \"$SEND_AT\" -db \"$DB_URL\" -sender +14155550110 -timeout \"$DRAIN_TIMEOUT\" >\"$OUT/sched.txt\""
  WATCH_PID=$LAST_PID
  # The latency run starts 1 s before the due second (its warm-up).
  w="$(calc "$due_epoch - 1 - ${EPOCHREALTIME/,/.}")"
  awk -v w="$w" 'BEGIN { exit !(w > 0) }' && nap "$w"
  log "scheduler: POST latency at ${SCHED_RATE}/s from the due second for $SCHED_WINDOW"
  LOAD_SCHED="$(loadavg)"
  loadgen_run sched-during +14155550112 "$SCHED_RATE" "$(calc "$(seconds "$SCHED_WINDOW") + 1")s" 1s "$API_URL"
  check_alive
  wait "$WATCH_PID" || { cat "$OUT/sched-watch.log" >&2; die "loadgen sched failed"; }
  forget_pid "$WATCH_PID"
  log "scheduler: all released $(val "$OUT/sched.txt" all_released_s) s after the due second, all sent $(val "$OUT/sched.txt" all_sent_s) s"
  drain scheduler
  DRAIN_SCHED="$DRAIN_S"
fi
stop_processor

# Phase 10: webhooks, in two parts, each with a fresh endpoint subscribed to
# every event type: bench/webhookrecv, which verifies each signature and
# measures each delivery's lag (arrival minus the event's timestamp).
#  10a: phase 3 again (delay 0, 10% failures, same offered rate): the
#       end-to-end rate with an endpoint, and the dispatcher's throughput
#       while its queue grows; after the load and the message drain, the
#       endpoint is deleted with what is still queued.
#  10b: a rate the dispatcher keeps up with (60% of 10a's delivery rate,
#       in messages), with a fresh processor, so that the lag is a delivery
#       lag, not a queue's age; the queue drains (up to WEBHOOK_DRAIN), then
#       the endpoint is deleted.
wh_pending_sql="SELECT count(*) FROM sms.webhook_deliveries WHERE state = 'pending'"
# webhook_start NAME: an endpoint for every event and a receiver with its secret.
webhook_start() {
  api_call POST /v1/webhook-endpoints "{\"url\":\"http://127.0.0.1:$RECV_PORT/\",\"description\":\"bench $1\"}" >"$OUT/webhook-endpoint-$1.json" \
    || die "creating the webhook endpoint failed"
  WH_ID="$(jq -r .id "$OUT/webhook-endpoint-$1.json")"
  start_bg webhookrecv "$OUT/webhookrecv-$1.log" "$TOOLS/webhookrecv" -addr "127.0.0.1:$RECV_PORT" -secret "$(jq -r .secret "$OUT/webhook-endpoint-$1.json")"
  RECV_PID=$LAST_PID
  fg_run "$LOADGEN" waitready -url "http://127.0.0.1:$RECV_PORT/stats" -pid "$RECV_PID" >/dev/null || die "webhookrecv did not start"
}
# webhook_stop NAME: delete the endpoint (and what is still queued for it), stop the receiver.
webhook_stop() {
  local t0="$EPOCHREALTIME"
  api_call DELETE "/v1/webhook-endpoints/$WH_ID" >/dev/null || die "deleting the webhook endpoint failed"
  echo "delete_s=$(calc "${EPOCHREALTIME/,/.} - ${t0/,/.}")" >"$OUT/webhook-delete-$1.txt"
  [[ "$(api_call GET /v1/webhook-endpoints | jq '.webhook_endpoints | length')" == 0 ]] || STATUS_NOTES+=("A webhook endpoint was left after phase 10 ($1).")
  stop_pid "$RECV_PID" 10
  RECV_PID=""
}
# settle_sent NAME: wait until the API's SENT count holds still for 3 s (2 minutes at most).
settle_sent() {
  local prev=-1 v still=0 i t0="$EPOCHREALTIME"
  for ((i = 0; i < 480; i++)); do
    v="$(psql "$DB_URL" -qAtc "SELECT COALESCE(sum(sent), 0)::bigint FROM sms.account_counters")"
    if [[ "$v" == "$prev" ]]; then
      still=$((still + 1))
      ((still < 12)) || break
    else
      still=0
    fi
    prev="$v"
    nap 0.25
  done
  echo "settled_s=$(calc "${EPOCHREALTIME/,/.} - ${t0/,/.}")" >"$OUT/settle-$1.txt"
  echo "sent=$v" >>"$OUT/settle-$1.txt"
}
if ! skipped webhooks; then
  PROC_NAME=processor-webhooks
  start_processor "$PROC_NAME" SMS_SIM_MIN_DELAY=0s SMS_SIM_MAX_DELAY=0s SMS_SIM_FAILURE_RATE=0.1
  webhook_start a
  WH_TOTAL="$(calc "$(seconds "$WEBHOOK") + $(seconds "$E2E_WARMUP")")s"
  log "phase 10a: webhooks: end to end at ${WEBHOOK_RATE}/s offered for $WEBHOOK (+$E2E_WARMUP), one endpoint for every event (SMS_WEBHOOK_PER_ENDPOINT=$WEBHOOK_PER_ENDPOINT)"
  LOAD_WH="$(loadavg)"
  loadgen_run webhooks +14155550113 "$WEBHOOK_RATE" "$WH_TOTAL" "$E2E_WARMUP" "$API_URL" \
    -db "$DB_URL" -brokers "$BROKERS" -inflight-url "$PROC_URL/metrics" -api-metrics-url "$API_URL/metrics" -samples "$OUT/samples-webhooks.csv"
  check_alive
  curl -sf "http://127.0.0.1:$RECV_PORT/stats" >"$OUT/webhookrecv-a.txt" || die "webhookrecv /stats failed"
  WH_QUEUED_END="$(psql "$DB_URL" -qAtc "$wh_pending_sql")"
  WH_ALL_END="$(psql "$DB_URL" -qAtc "SELECT count(*) FROM sms.webhook_deliveries")"
  WH_RATE_A="$(awk -v n="$(val "$OUT/webhookrecv-a.txt" distinct)" -v d="$(seconds "$WH_TOTAL")" 'BEGIN { printf "%.0f", n / d }')"
  log "webhooks: $(fmt_int "$(val "$OUT/loadgen-webhooks.txt" final_rps_window)") final/s; $(fmt_int "$WH_RATE_A") webhooks/s delivered, $(fmt_int "$WH_QUEUED_END") still queued"
  drain webhooks
  DRAIN_WH="$DRAIN_S"
  # Webhooks per message once every message is final (receipts may add more).
  WH_ALL_DRAINED="$(psql "$DB_URL" -qAtc "SELECT count(*) FROM sms.webhook_deliveries")"
  WH_PER_MSG="$(awk -v a="$WH_ALL_DRAINED" -v m="$(val "$OUT/loadgen-webhooks.txt" ok202)" 'BEGIN { if (m > 0) printf "%.2f", a / m; else print 0 }')"
  psql "$DB_URL" -qAtc "SELECT state, count(*), sum(attempts) FROM sms.webhook_deliveries GROUP BY state" >"$OUT/webhook-states-a.txt" 2>&1 || true
  WH_LEFT_A="$(psql "$DB_URL" -qAtc "$wh_pending_sql")"
  webhook_stop a
  stop_processor
  log "webhooks: endpoint deleted with $(fmt_int "$WH_LEFT_A") deliveries still queued (in $(fmt1 "$(val "$OUT/webhook-delete-a.txt" delete_s)") s)"

  # 10b: a sustainable rate.
  WEBHOOK_RATE_B="${BENCH_WEBHOOK_RATE_B:-$(awk -v w="$WH_RATE_A" -v p="$WH_PER_MSG" 'BEGIN { r = (p > 0) ? int(0.6 * w / p) : 10; print (r < 10 ? 10 : r) }')}"
  # A fresh processor: the receipts 10a's left queued in the simulator would
  # bring old events (and their lag) into 10b.
  PROC_NAME=processor-webhooks-b
  start_processor "$PROC_NAME" SMS_SIM_MIN_DELAY=0s SMS_SIM_MAX_DELAY=0s SMS_SIM_FAILURE_RATE=0.1
  # 10a's receipts are still being recorded after its drain (outcomes the
  # processor kept for the API are reported by the next one): their events
  # would go to 10b's endpoint with 10a's age. Wait until the SENT count has
  # held still for 3 s (at most 2 minutes) before creating it.
  settle_sent webhooks-b
  webhook_start b
  WHB_TOTAL="$(calc "$(seconds "$WEBHOOK_B") + 2")s"
  log "phase 10b: webhooks at a sustainable rate: ${WEBHOOK_RATE_B}/s offered for $WEBHOOK_B (+2s)"
  loadgen_run webhooks-b +14155550115 "$WEBHOOK_RATE_B" "$WHB_TOTAL" 2s "$API_URL" \
    -db "$DB_URL" -inflight-url "$PROC_URL/metrics" -samples "$OUT/samples-webhooks-b.csv"
  check_alive
  drain webhooks-b
  fg_run "$LOADGEN" waitsql -db "$DB_URL" -sql "$wh_pending_sql" -max 0 -timeout "$WEBHOOK_DRAIN" -interval 250ms >"$OUT/webhook-drain-b.txt" 2>>"$OUT/loadgen.log" \
    || die "waiting for the webhook queue failed"
  psql "$DB_URL" -qAtc "SELECT state, count(*), sum(attempts) FROM sms.webhook_deliveries GROUP BY state" >"$OUT/webhook-states-b.txt" 2>&1 || true
  curl -sf "http://127.0.0.1:$RECV_PORT/stats" >"$OUT/webhookrecv-b.txt" || die "webhookrecv /stats failed"
  webhook_stop b
  stop_processor
  log "webhooks at ${WEBHOOK_RATE_B}/s: $(fmt_int "$(val "$OUT/webhookrecv-b.txt" distinct)") delivered, queue empty: $(val "$OUT/webhook-drain-b.txt" reached); lag p50 $(val "$OUT/webhookrecv-b.txt" lag_p50_ms) ms, p99 $(val "$OUT/webhookrecv-b.txt" lag_p99_ms) ms"
fi

# Phase 11: SMPP. OpenSMPP's SMSC simulator (scripts/smsc.sh, own state
# dir and port, every receipt DELIVRD) and the processor with
# SMS_CARRIER=smpp, open loop at SMPP_RATE/s; the simulator is one more
# party in the CPU accounting. OpenSMPP's simulator answers a few submits
# per second per bind (~50-60/s in all here, whatever the binds and
# window), so the rate is low; for a fair CPU comparison the simulated
# carrier (delay 0, no failures, its receipts on) runs first at the same
# rate (11a). Each part waits for its receipts.
if ! skipped smpp; then
  SMPP_TOTAL="$(calc "$(seconds "$SMPP") + $(seconds "$SMPP_WARMUP")")s"
  sent_sql="SELECT COALESCE(sum(sent), 0)::bigint FROM sms.account_counters"
  # wait_receipts NAME SENDER: until no more messages are SENT than before
  # the part (30 s at most: the receipts come within seconds).
  wait_receipts() {
    fg_run "$LOADGEN" waitsql -db "$DB_URL" -sql "$sent_sql" -max "$SENT_BEFORE" -timeout 30s -interval 250ms >"$OUT/receipts-$1.txt" 2>>"$OUT/loadgen.log" \
      || die "waiting for the receipts of $1 failed"
    if [[ "$(val "$OUT/receipts-$1.txt" reached)" != true ]]; then
      local nopart
      nopart="$(psql "$DB_URL" -qAtc "SELECT count(*) FROM sms.messages m WHERE m.sender = '$2' AND m.status = 'SENT'
          AND NOT EXISTS (SELECT 1 FROM processor.carrier_parts p WHERE p.message_id = m.id)")"
      STATUS_NOTES+=("$1: $(( $(val "$OUT/receipts-$1.txt" value) - SENT_BEFORE )) messages still SENT (no receipt) 30 s after the drain; $nopart of them have no carrier part on record (their carrier id was taken by an earlier message), so no receipt can match them.")
    fi
  }
  # idle_cpu NAME: CPU of each party over SMPP_IDLE with no load (subtracted
  # from the part's CPU to get the cost per message at this low rate).
  idle_cpu() {
    cpu_snap "$OUT/cpu-idle-$1.0"
    nap "$(seconds "$SMPP_IDLE")"
    cpu_snap "$OUT/cpu-idle-$1.1"
  }
  PROC_NAME=processor-smpp-sim
  start_processor "$PROC_NAME" SMS_SIM_MIN_DELAY=0s SMS_SIM_MAX_DELAY=0s SMS_SIM_FAILURE_RATE=0
  idle_cpu smpp-sim
  SENT_BEFORE="$(psql "$DB_URL" -qAtc "$sent_sql")"
  log "phase 11a: simulated carrier (delay 0, receipts on) at ${SMPP_RATE}/s offered for $SMPP (+$SMPP_WARMUP): the CPU reference for SMPP"
  loadgen_run smpp-sim +14155550116 "$SMPP_RATE" "$SMPP_TOTAL" "$SMPP_WARMUP" "$API_URL" \
    -db "$DB_URL" -inflight-url "$PROC_URL/metrics" -samples "$OUT/samples-smpp-sim.csv"
  check_alive
  drain smpp-sim
  wait_receipts smpp-sim +14155550116
  stop_processor

  smsc clean >/dev/null 2>>"$OUT/smsc-script.log" || true
  SMSC_STARTED=1
  SMSC_ADDR="$(smsc start 2>>"$OUT/smsc-script.log")" || { tail -n 20 "$OUT/smsc-script.log" >&2; die "the SMSC simulator did not start"; }
  SMSC_PID="$(cat "$SMSC_STATE/smsc.pid")"
  PROC_NAME=processor-smpp
  start_processor "$PROC_NAME" SMS_CARRIER=smpp SMS_SMPP_ADDR="$SMSC_ADDR" SMS_SMPP_SYSTEM_ID=smsctl SMS_SMPP_PASSWORD=smsctl \
    SMS_SMPP_BINDS="$SMPP_BINDS" SMS_SMPP_WINDOW="$SMPP_WINDOW"
  idle_cpu smpp
  SENT_BEFORE="$(psql "$DB_URL" -qAtc "$sent_sql")"
  log "phase 11b: SMPP to OpenSMPP's simulator on $SMSC_ADDR (pid $SMSC_PID; $SMPP_BINDS binds, window $SMPP_WINDOW) at ${SMPP_RATE}/s offered for $SMPP (+$SMPP_WARMUP)"
  LOAD_SMPP="$(loadavg)"
  loadgen_run smpp +14155550114 "$SMPP_RATE" "$SMPP_TOTAL" "$SMPP_WARMUP" "$API_URL" \
    -db "$DB_URL" -inflight-url "$PROC_URL/metrics" -samples "$OUT/samples-smpp.csv"
  check_alive
  alive "$SMSC_PID" || die "the SMSC simulator died (log: $OUT/smsc.log)"
  M="$OUT/loadgen-smpp.txt"
  log "smpp: $(fmt_int "$(val "$M" final_rps_window)") sent/s, $(fmt_int "$(val "$M" delivered_rps_window)") delivered/s; draining, receipts included"
  drain smpp
  wait_receipts smpp +14155550114
  DRAIN_SMPP="$(calc "$DRAIN_S + $(val "$OUT/receipts-smpp.txt" waited_s)")"
  stop_processor
  # Phase 12b: inbound through the SMSC (scripts/smsc.sh mo): deliver_sm to
  # the processor (SMPP, one bind: the simulator sends an MO to every bind,
  # and each copy would be a message of its own), which hands it to the API.
  if ! skipped inbound; then
    inbound_setup
    PROC_NAME=processor-mo
    start_processor "$PROC_NAME" SMS_CARRIER=smpp SMS_SMPP_ADDR="$SMSC_ADDR" SMS_SMPP_SYSTEM_ID=smsctl SMS_SMPP_PASSWORD=smsctl SMS_SMPP_BINDS=1
    # Bound: the simulator lists the session.
    for ((i = 0; i < 100; i++)); do smsc clients 2>/dev/null | grep -qx smsctl && break; nap 0.1; done
    IN_BEFORE="$(psql "$DB_URL" -qAtc "$inbound_sql")"
    log "phase 12b: $MO_COUNT inbound messages through scripts/smsc.sh mo, $MO_PAR at a time"
    t0="$EPOCHREALTIME"
    cpu_snap "$OUT/cpu-mo.0"
    for ((p = 0; p < MO_PAR; p++)); do
      ( for ((k = p; k < MO_COUNT; k += MO_PAR)); do
          smsc mo "+447911$(printf '%06d' $((800000 + k)))" "$INBOUND_TO" "smsctl bench mo $k" >/dev/null 2>>"$OUT/smsc-mo.log" || echo "mo $k failed" >>"$OUT/smsc-mo.log"
        done ) &
      MO_PIDS+=($!)
      PIDS+=($!)
      NAME_OF[$!]="smsc.sh mo"
    done
    for p in "${MO_PIDS[@]}"; do wait "$p" || true; forget_pid "$p"; done
    MO_SENT_S="$(calc "${EPOCHREALTIME/,/.} - ${t0/,/.}")"
    fg_run "$LOADGEN" waitsql -db "$DB_URL" -sql "SELECT $((IN_BEFORE + MO_COUNT)) - ($inbound_sql)" -max 0 -timeout 2m -interval 100ms \
      >"$OUT/mo-wait.txt" 2>>"$OUT/loadgen.log" || die "waiting for the inbound messages failed"
    MO_ALL_S="$(calc "${EPOCHREALTIME/,/.} - ${t0/,/.}")"
    cpu_snap "$OUT/cpu-mo.1"
    MO_STORED=$(( $(psql "$DB_URL" -qAtc "$inbound_sql") - IN_BEFORE ))
    MO_FAILED="$(grep -c 'failed' "$OUT/smsc-mo.log" 2>/dev/null || true)"
    log "mo: $MO_COUNT commands in $(fmt1 "$MO_SENT_S") s, $MO_STORED stored after $(fmt1 "$MO_ALL_S") s"
    stop_processor
  fi
  SMSC_HWM="$(vmhwm_mb "$SMSC_PID")"
  cp "$SMSC_STATE/smsc.log" "$OUT/smsc.log" 2>/dev/null || true
  smsc stop >/dev/null 2>>"$OUT/smsc-script.log" || log "smsc.sh stop failed; see $OUT/smsc-script.log"
  SMSC_PID=""
fi

# Phase 12: inbound messages and the opt-out check.
#  12a: POST /v1/internal/inbound (what the processor calls), wrk closed loop.
#  12c: the opt-out check on POST /v1/messages: an account without
#       suppressions (A) against one with SUPP_COUNT (B; the API keeps up to
#       100,000 per account in memory), open loop at SUPP_RATE/s with the
#       processor running (delay 0), alternated A B A B after a warm-up of
#       each; recipients are never suppressed ones. Compared: latency and
#       the API's CPU per accepted message (steadier than throughput on a
#       shared machine).
#  (12b, through the SMSC, runs in phase 11 while the simulator is up.)
if ! skipped inbound; then
  inbound_setup
  IN_BEFORE="$(psql "$DB_URL" -qAtc "$inbound_sql")"
  log "phase 12a: POST /v1/internal/inbound, wrk -c$INBOUND_CONNS for $INBOUND"
  LOAD_INBOUND="$(loadavg)"
  WRK_C="$INBOUND_CONNS" WRK_SCRIPT="$ROOT/bench/post-inbound.lua" WRK_PATH=/v1/internal/inbound \
    BENCH_INTERNAL_TOKEN="$SMS_INTERNAL_TOKEN" BENCH_INBOUND_TO="$INBOUND_TO" BENCH_RUN="$RUN_ID" \
    wrk_run inbound - "$INBOUND" "$API_URL"
  check_alive
  INBOUND_RPS="$(wrk_rps inbound)"
  INBOUND_STORED=$(( $(psql "$DB_URL" -qAtc "$inbound_sql") - IN_BEFORE ))
  log "inbound: $(fmt_int "$INBOUND_RPS")/s, $(val "$OUT/wrk-inbound.kv" status) non-2xx; $(fmt_int "$INBOUND_STORED") stored"

  log "phase 12c: suppression check: importing $(fmt_int "$SUPP_COUNT") suppressions into account bench-optout"
  KEY_B="$("$ROLE_BIN" apikey create --account bench-optout 2>>"$OUT/apikey.log" | tail -n 1)"
  [[ "$KEY_B" == sms_* ]] || die "apikey create --account bench-optout failed (see $OUT/apikey.log)"
  for ((o = 0; o < SUPP_COUNT; o += 10000)); do
    awk -v o="$o" -v n="$(( SUPP_COUNT - o < 10000 ? SUPP_COUNT - o : 10000 ))" 'BEGIN {
        printf "{\"reason\":\"bench\",\"phones\":["; for (i = 0; i < n; i++) printf "%s\"+447912%06d\"", (i ? "," : ""), o + i; print "]}" }' >"$OUT/suppressions.json"
    curl -sS -f -X POST -H "Authorization: Bearer $KEY_B" -H 'Content-Type: application/json' --data @"$OUT/suppressions.json" \
      "$API_URL/v1/suppressions" >/dev/null || die "importing suppressions failed"
  done
  rm -f "$OUT/suppressions.json"
  SUPP_TOTAL="$(curl -sf -H "Authorization: Bearer $KEY_B" "$API_URL/v1/suppressions?page_size=1" | jq -r '.total_count // "?"')"
  PROC_NAME=processor-inbound
  start_processor "$PROC_NAME" SMS_SIM_MIN_DELAY=0s SMS_SIM_MAX_DELAY=0s SMS_SIM_FAILURE_RATE=0.1
  log "phase 12c: A/B at ${SUPP_RATE}/s open loop, $SUPP each (+1s): no suppressions (A) vs $SUPP_TOTAL (B)"
  LOAD_SUPP="$(loadavg)"
  SUPP_TOTAL_S="$(calc "$(seconds "$SUPP") + 1")s"
  loadgen_run supp-warm-a +14155550117 "$SUPP_RATE" 3s 1s "$API_URL" -key "$API_KEY"
  loadgen_run supp-warm-b +14155550118 "$SUPP_RATE" 3s 1s "$API_URL" -key "$KEY_B"
  loadgen_run supp-a1 +14155550119 "$SUPP_RATE" "$SUPP_TOTAL_S" 1s "$API_URL" -key "$API_KEY"
  loadgen_run supp-b1 +14155550120 "$SUPP_RATE" "$SUPP_TOTAL_S" 1s "$API_URL" -key "$KEY_B"
  loadgen_run supp-a2 +14155550121 "$SUPP_RATE" "$SUPP_TOTAL_S" 1s "$API_URL" -key "$API_KEY"
  loadgen_run supp-b2 +14155550122 "$SUPP_RATE" "$SUPP_TOTAL_S" 1s "$API_URL" -key "$KEY_B"
  check_alive
  for n in supp-a1 supp-b1 supp-a2 supp-b2; do
    log "$n: p50 $(val "$OUT/loadgen-$n.txt" p50_ms) ms, p99 $(val "$OUT/loadgen-$n.txt" p99_ms) ms, API $(api_ms_per_202 "$n") ms CPU per message"
  done
  drain suppression
  DRAIN_SUPP="$DRAIN_S"
  stop_processor
fi

API_HWM_END="$(vmhwm_mb "$API_PID")"
log "stopping serve api with SIGTERM"
stop_pid "$API_PID" 30
API_RC=$STOP_RC
[[ "$API_RC" == 0 ]] || STATUS_NOTES+=("serve api exited with status $API_RC after SIGTERM (log: $OUT/api.log).")
fg_run "$LOADGEN" counts -db "$DB_URL" >"$OUT/counts.txt" 2>>"$OUT/loadgen.log" || die "counting the stored messages failed"
psql "$DB_URL" -c "SELECT schemaname, relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del, n_dead_tup, seq_scan, seq_tup_read, idx_scan FROM pg_stat_user_tables ORDER BY n_tup_ins + n_tup_upd DESC" >"$OUT/pg-tables.txt" 2>&1 || true

# ---------------------------------------------------------------- report

C="$OUT/counts.txt"
stored_of() { local v; v="$(val "$C" "sender_${1#+}")"; echo "${v:-0}"; }
LOSS_OK=1
LOSS_LINES=()
EXTRA_WRK=0     # stored, answer cut off by wrk's stop
EXTRA_LOADGEN=0 # stored, but the generator gave up waiting (timeout)
# wrk phases: answers cut off by wrk's stop may be stored (at most one per connection).
WRK_PHASES=("api-warmup:+14155550100" "saturation-api:+14155550105" "saturation:+14155550101")
for ph in "${WRK_PHASES[@]}"; do
  name="${ph%%:*}" sender="${ph#*:}"
  got="$(wrk_ok "$name")" st="$(stored_of "$sender")"
  extra=$((st - ${got%.*}))
  cut=$((WRK_CONNS + $(wrk_sockerr "$name")))
  if ((extra < 0)); then LOSS_OK=0; LOSS_LINES+=("$name: **$((-extra)) messages answered 202 but not stored**"); fi
  if ((extra > cut)); then LOSS_OK=0; LOSS_LINES+=("$name: $extra more stored than 2xx answers (more than the $cut requests cut off by wrk's stop)"); fi
  EXTRA_WRK=$((EXTRA_WRK + extra))
  LOSS_LINES+=("$name: $(fmt_int "$got") 2xx, $(fmt_int "$st") stored (+$extra cut off by wrk's stop)")
done
LOADGEN_PHASES=(latency e2e sim)
for n in sched-quiet sched-during webhooks webhooks-b smpp-sim smpp supp-warm-a supp-warm-b supp-a1 supp-b1 supp-a2 supp-b2; do [[ -f "$OUT/loadgen-$n.txt" ]] && LOADGEN_PHASES+=("$n"); done
declare -A SENDER_OF=([latency]=+14155550102 [e2e]=+14155550103 [sim]=+14155550104 [sched-quiet]=+14155550111 [sched-during]=+14155550112
  [webhooks]=+14155550113 [webhooks-b]=+14155550115 [smpp]=+14155550114 [smpp-sim]=+14155550116
  [supp-warm-a]=+14155550117 [supp-warm-b]=+14155550118 [supp-a1]=+14155550119 [supp-b1]=+14155550120 [supp-a2]=+14155550121 [supp-b2]=+14155550122 [batch100]=+14155550106 [batch1000]=+14155550107 [prio-backlog]=+14155550108 [sched]=+14155550110)
for name in "${LOADGEN_PHASES[@]}"; do
  sender="${SENDER_OF[$name]}" f="$OUT/loadgen-$name.txt"
  got="$(val "$f" ok202)" st="$(stored_of "$sender")"
  unknown=$(($(val "$f" transport_errors) + $(val "$f" unanswered)))
  extra=$((st - got))
  if ((extra < 0)); then LOSS_OK=0; LOSS_LINES+=("$name: **$((-extra)) messages answered 202 but not stored**"); fi
  if ((extra > unknown)); then LOSS_OK=0; LOSS_LINES+=("$name: $extra stored without a 202 (only $unknown requests went unanswered)"); fi
  EXTRA_LOADGEN=$((EXTRA_LOADGEN + extra))
  LOSS_LINES+=("$name: $(fmt_int "$got") 202s, $(fmt_int "$st") stored$( ((extra <= 0)) || echo " (+$extra whose request timed out at the generator, of $unknown)")")
done
# Batch phases: the answers' "accepted" counts; a batch whose answer never
# came (transport error) may be stored whole or not at all.
BATCH_ACCEPTED=0
EXTRA_BATCH=0
for name in batch100 batch1000 prio-backlog sched; do
  f="$OUT/batch-$name.txt"
  [[ -f "$f" ]] || continue
  sender="${SENDER_OF[$name]}"
  got="$(val "$f" accepted)" st="$(stored_of "$sender")" unknown="$(val "$f" unknown_messages)"
  extra=$((st - got))
  if ((extra < 0)); then LOSS_OK=0; LOSS_LINES+=("$name: **$((-extra)) messages accepted in a batch answer but not stored**"); fi
  if ((extra > unknown)); then LOSS_OK=0; LOSS_LINES+=("$name: $extra stored without being accepted (only $unknown in batches whose answer never came)"); fi
  BATCH_ACCEPTED=$((BATCH_ACCEPTED + got))
  EXTRA_BATCH=$((EXTRA_BATCH + extra))
  LOSS_LINES+=("$name: $(fmt_int "$got") accepted in $(fmt_int "$(val "$f" batches_ok)") batches, $(fmt_int "$st") stored")
done
TRACKED=0
if [[ -f "$OUT/priority.txt" ]]; then
  TRACKED="$(val "$OUT/priority.txt" posted)"
  st="$(stored_of +14155550109)"
  [[ "$st" == "$TRACKED" ]] || { LOSS_OK=0; LOSS_LINES+=("priority (tracked): **$TRACKED posted, $st stored**"); }
  LOSS_LINES+=("priority (tracked): $TRACKED 202s, $st stored")
fi
# Inbound: stored == 2xx of wrk (+ answers cut off by its stop) + the MO messages.
if [[ -f "$OUT/wrk-inbound.kv" ]]; then
  got="$(printf '%.0f' "$(wrk_ok inbound)")" cut=$((INBOUND_CONNS + $(wrk_sockerr inbound)))
  extra=$((INBOUND_STORED - got))
  if ((extra < 0)); then LOSS_OK=0; LOSS_LINES+=("inbound: **$((-extra)) inbound messages answered 2xx but not stored**"); fi
  if ((extra > cut)); then LOSS_OK=0; LOSS_LINES+=("inbound: $extra more stored than 2xx answers (more than the $cut cut off by wrk's stop)"); fi
  LOSS_LINES+=("inbound (internal route): $(fmt_int "$got") 2xx, $(fmt_int "$INBOUND_STORED") stored")
fi
if [[ -n "${MO_STORED:-}" ]]; then
  [[ "$MO_STORED" == "$MO_COUNT" ]] || { LOSS_OK=0; LOSS_LINES+=("inbound (SMSC mo): **$MO_COUNT sent, $MO_STORED stored**"); }
  LOSS_LINES+=("inbound (SMSC mo): $MO_COUNT sent, $MO_STORED stored")
fi
PENDING_END=$(( $(val "$C" pending) + $(val "$C" scheduled) ))
STORED="$(val "$C" stored)"
ANSWERED_202=0
for ph in "${WRK_PHASES[@]}"; do ANSWERED_202=$((ANSWERED_202 + $(printf '%.0f' "$(wrk_ok "${ph%%:*}")"))); done
for n in "${LOADGEN_PHASES[@]}"; do ANSWERED_202=$((ANSWERED_202 + $(val "$OUT/loadgen-$n.txt" ok202))); done
ANSWERED_202=$((ANSWERED_202 + TRACKED))
[[ "$PENDING_END" == 0 ]] || LOSS_OK=0
bad_counters=""
for st in scheduled pending sent delivered undelivered failed expired canceled; do
  [[ "$(val "$C" "counters_$st")" == "$(val "$C" "$st")" ]] || bad_counters+="$st: counters $(val "$C" "counters_$st"), rows $(val "$C" "$st"); "
done
[[ -z "$bad_counters" ]] || STATUS_NOTES+=("The API's counters disagree with the rows (${bad_counters%; }); the per-second rates come from the counters.")
if (( $(vz "$C" receipts_unmatchable) > 0 )); then
  STATUS_NOTES+=("**$(fmt_int "$(val "$C" receipts_unmatchable)") tries were sent with receipts expected but have no carrier part on record**: their carrier id had been used before (the simulated carrier numbers its ids from 0 again in each processor), so their receipts cannot be matched and they stay SENT until the receipt timeout.")
fi
if [[ "$(val "$C" deliveries)" != "$(val "$C" dispatched)" ]]; then
  STATUS_NOTES+=("processor.deliveries holds $(val "$C" deliveries) outcomes for $(val "$C" dispatched) messages claimed for the carrier.")
fi

for name in batch100 batch1000 prio-backlog sched; do
  f="$OUT/batch-$name.txt"
  [[ -f "$f" ]] || continue
  if (( $(val "$f" non200) + $(val "$f" rejected) + $(val "$f" transport_errors) > 0 )); then
    STATUS_NOTES+=("**batch $name: $(val "$f" non200) answers not 200 ($(val "$f" codes)), $(val "$f" rejected) messages rejected, $(val "$f" transport_errors) transport errors ($(val "$f" errors)).**")
  fi
done
# Errors instead of 202s: say so, with the API's first logged error.
for n in saturation-api saturation inbound "${LOADGEN_PHASES[@]}"; do
  if [[ "$n" == saturation* || "$n" == inbound ]]; then
    [[ -f "$OUT/wrk-$n.kv" ]] || continue
    bad="$(val "$OUT/wrk-$n.kv" status)" all="$(val "$OUT/wrk-$n.kv" requests)"
  else
    bad="$(val "$OUT/loadgen-$n.txt" non202)" all="$(val "$OUT/loadgen-$n.txt" answered)"
  fi
  if ((${bad:-0} > 0)); then
    first="$(grep -m1 '"level":"error"' "$OUT/api.log" 2>/dev/null | cut -c1-300 || true)"
    STATUS_NOTES+=("**$n: $(fmt_int "$bad") of $(fmt_int "$all") answers were not 202.** First error in api.log: \`${first:-none logged}\`")
  fi
done

yes_no() { if awk "BEGIN { exit !($1) }"; then echo yes; else echo "**no**"; fi; }
# kafka_desc: which Kafka the run used, for the report's header.
kafka_desc() {
  local t="topics replication factor ${TOPIC_RF:-?}, min.insync.replicas ${TOPIC_MIN_ISR:-?}, producers acks=all"
  if ((KAFKA_NODES > 1)); then
    echo "**$KAFKA_NODES-broker KRaft cluster** (BENCH_KAFKA_NODES=$KAFKA_NODES; scripts/kafka.sh, every node a combined broker+controller in its own JVM, all on this machine); $t; the kafka CPU below is the sum of the $KAFKA_NODES brokers"
  else
    echo "single KRaft node, scripts/kafka.sh; $t"
  fi
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "?" }'; }

L="$OUT/loadgen-latency.txt"
E="$OUT/loadgen-e2e.txt"
S="$OUT/loadgen-sim.txt"
EL="$OUT/loadgen-echo-latency.txt"
SAT_NON=$(( $(val "$OUT/wrk-saturation.kv" status) ))
SAT_SOCK="$(wrk_sockerr saturation)"
SAT_API_NON=$(( $(val "$OUT/wrk-saturation-api.kv" status) ))
SAT_API_SOCK="$(wrk_sockerr saturation-api)"
E2E_FINAL="$(val "$E" final_rps_window)"
LAG_S="$(val "$E" lag_start)" LAG_E="$(val "$E" lag_end)"
PEND_S="$(val "$E" pending_start)" PEND_E="$(val "$E" pending_end)"
# Not growing: neither the consumer lag nor the messages waiting for a final
# status (outbox, Kafka, processor, reports) grew by more than 1 s of traffic.
LAG_OK="?"
[[ -n "$LAG_S" && -n "$LAG_E" && -n "$PEND_S" && -n "$PEND_E" ]] &&
  LAG_OK="$(yes_no "$LAG_E <= $LAG_S + $E2E_RATE && $PEND_E <= $PEND_S + $E2E_RATE")"
LAG_S="${LAG_S:-?}" LAG_E="${LAG_E:-?}" PEND_S="${PEND_S:-?}" PEND_E="${PEND_E:-?}"
gen_errors() { echo $(( $(val "$1" transport_errors) + $(val "$1" skipped) )); }
# where_backlog FILE: where the messages not yet final were at the end of the window.
where_backlog() { echo "at the end: outbox $(fmt_int "$(val "$1" outbox_end)"), Kafka lag $(fmt_int "$(val "$1" lag_end)") (of which in flight $(fmt_int "$(val "$1" in_flight_end)")), reports waiting $(fmt_int "$(val "$1" reports_waiting_end)")"; }
SIM_FINAL="$(val "$S" final_rps_window)"
INFL_AVG="$(val "$S" in_flight_avg)" INFL_MAX="$(val "$S" in_flight_max)"
PROC_HWM_MAX=$(( PROC1_HWM > PROC2_HWM ? PROC1_HWM : PROC2_HWM ))
base_lat=""
[[ -f "$EL" ]] && base_lat=" (echo baseline: p50 $(fmt2 "$(val "$EL" p50_ms)") / p99 $(fmt2 "$(val "$EL" p99_ms)") / p99.9 $(fmt2 "$(val "$EL" p999_ms)") ms)"

# receipt_shares: per phase, receipted / (receipted + SENT), from the final counts.
receipt_shares() {
  local ph out="" name sender k r n
  for ph in "saturation:+14155550101" "end to end:+14155550103" "default simulation:+14155550104" "webhooks 10a:+14155550113" \
    "simulated carrier at the SMPP rate:+14155550116" "SMPP:+14155550114"; do
    name="${ph%%:*}" k="sender_${ph#*:+}"
    [[ -n "$(val "$C" "$k")" ]] || continue
    r=$(( $(vz "$C" "${k}_delivered") + $(vz "$C" "${k}_undelivered") + $(vz "$C" "${k}_expired") ))
    n=$(( r + $(vz "$C" "${k}_sent") ))
    out+="$name $(awk -v r="$r" -v n="$n" 'BEGIN { if (n > 0) printf "%.1f%%", 100 * r / n; else print "-" }') of $(fmt_int "$n"); "
  done
  echo "${out%; }"
}
# api_ms_per_req NAME: the API's CPU milliseconds per 2xx answer of wrk run NAME.
api_ms_per_req() {
  awk -v hz="$CLK_TCK" -v n="$(wrk_ok "$1")" 'FNR == NR { if ($1 == "api") a = $3; next } $1 == "api" { b = $3 }
    END { if (n > 0) printf "%.3f", 1000 * (b - a) / hz / n; else print "?" }' "$OUT/cpu-$1.0" "$OUT/cpu-$1.1"
}
# wave2_drains: the drain times of the wave-2 phases that ran.
wave2_drains() {
  [[ -z "${DRAIN_BATCH:-}" ]] || printf ', 7: %s s' "$(fmt1 "$DRAIN_BATCH")"
  [[ -z "${DRAIN_PRIO:-}" ]] || printf ', 8: %s s' "$(fmt1 "$DRAIN_PRIO")"
  [[ -z "${DRAIN_SCHED:-}" ]] || printf ', 9: %s s' "$(fmt1 "$DRAIN_SCHED")"
  [[ -z "${DRAIN_WH:-}" ]] || printf ', 10a: %s s' "$(fmt1 "$DRAIN_WH")"
  [[ -z "${DRAIN_SMPP:-}" ]] || printf ', 11 (receipts included): %s s' "$(fmt1 "$DRAIN_SMPP")"
  [[ -z "${DRAIN_SUPP:-}" ]] || printf ', 12: %s s' "$(fmt1 "$DRAIN_SUPP")"
  return 0
}
# ms V: a millisecond figure, rounded, or ? when missing.
ms() { awk -v n="$1" 'BEGIN { if (n == "" || n != n + 0) print "?"; else if (n < 10) printf "%.1f", n; else printf "%.0f", n }'; }

# wave2_rows: the table rows of phases 7-11 that ran.
wave2_rows() {
  local B1="$OUT/batch-batch100.txt" B2="$OUT/batch-batch1000.txt" P="$OUT/priority.txt" SC="$OUT/sched.txt" \
    SQ="$OUT/loadgen-sched-quiet.txt" SD="$OUT/loadgen-sched-during.txt" W="$OUT/loadgen-webhooks.txt" M="$OUT/loadgen-smpp.txt"
  if [[ -f "$B1" && -f "$B2" ]]; then
    local r1 r2
    r1="$(val "$B1" accepted_rps_window)" r2="$(val "$B2" accepted_rps_window)"
    echo "| 7 | batch ingestion: \`POST /v1/messages/batch\`, $BATCH_CONNS connections, closed loop, API alone (processor stopped), $BATCH each | batches of 100: **$(fmt_int "$r1") messages/s** (batch latency p50 $(ms "$(val "$B1" batch_p50_ms)") / p99 $(ms "$(val "$B1" batch_p99_ms)") ms); of 1,000: **$(fmt_int "$r2")/s** (p50 $(ms "$(val "$B2" batch_p50_ms)") / p99 $(ms "$(val "$B2" batch_p99_ms)") ms); non-200: $(val "$B1" non200) / $(val "$B2" non200), rejected: $(val "$B1" rejected) / $(val "$B2" rejected), transport errors: $(val "$B1" transport_errors) / $(val "$B2" transport_errors) | | | $(ratio "$r1" "$BASE_RPS") / $(ratio "$r2" "$BASE_RPS"); × single POST, API alone: $(ratio "$r1" "$SAT_API_RPS") / $(ratio "$r2" "$SAT_API_RPS") |"
  fi
  if [[ -f "$P" ]]; then
    echo "| 8 | priority: one high, one normal and one low message posted at once, $PRIO_ROUNDS rounds 1 s apart, behind $(fmt_int "$PRIO_BACKLOG") low ones (processor started on the backlog; default simulation 1–3 s, no receipts: SENT is final) | high SENT after **$(fmt_int "$(val "$P" high_sent_ms_median)") ms** (median; max $(fmt_int "$(val "$P" high_sent_ms_max)")); normal $(fmt_int "$(val "$P" normal_sent_ms_median)") ms (max $(fmt_int "$(val "$P" normal_sent_ms_max)")); low $(fmt_int "$(val "$P" low_sent_ms_median)") ms (max $(fmt_int "$(val "$P" low_sent_ms_max)")); backlog at the first post: Kafka lag low $(fmt_int "$(val "$P" backlog_lag_low)"), normal $(fmt_int "$(val "$P" backlog_lag_normal)"), high $(fmt_int "$(val "$P" backlog_lag_high)"); in flight $(fmt_int "$(val "$P" backlog_in_flight)"); not yet sent $(fmt_int "$(val "$P" backlog_not_sent)"); rest of the backlog drained $(fmt1 "${DRAIN_PRIO:-?}") s after tracking ended | | | |"
  fi
  if [[ -f "$SC" ]]; then
    local over=""
    [[ "${SCHED_OVERRUN:-0}" == 0 ]] || over=" (**the insert overran the due second**)"
    echo "| 9 | scheduler: $(fmt_int "$SCHED_COUNT") messages with the same send_at, inserted in batches of 1,000 in $(fmt1 "$(val "$OUT/batch-sched.txt" elapsed_s)") s$over; processor running (default simulation) | all released (none SCHEDULED) **$(fmt1 "$(val "$SC" all_released_s)") s** after the due second (first release after $(fmt2 "$(val "$SC" first_release_s)") s; $(fmt_int "$(val "$SC" release_rps)")/s); all left PENDING after $(fmt1 "$(val "$SC" all_sent_s)") s; POST latency at $(fmt_int "$SCHED_RATE")/s open loop from the due second for $SCHED_WINDOW: p50 **$(fmt2 "$(val "$SD" p50_ms)")** / p99 **$(fmt2 "$(val "$SD" p99_ms)")** ms (max $(fmt1 "$(val "$SD" max_ms)"), non-202 $(val "$SD" non202)); quiet, just before: p50 $(fmt2 "$(val "$SQ" p50_ms)") / p99 $(fmt2 "$(val "$SQ" p99_ms)") ms | | | |"
  fi
  if [[ -f "$W" && -f "$OUT/webhookrecv-a.txt" ]]; then
    local wf ef WA="$OUT/webhookrecv-a.txt" WB="$OUT/webhookrecv-b.txt" WDB="$OUT/webhook-drain-b.txt"
    wf="$(val "$W" final_rps_window)" ef="$(val "$OUT/loadgen-e2e.txt" final_rps_window)"
    echo "| 10a | end to end with one webhook endpoint (bench/webhookrecv) for every event type, SMS_WEBHOOK_PER_ENDPOINT=$WEBHOOK_PER_ENDPOINT, delay 0, 10% failures, $WEBHOOK at $(fmt_int "$WEBHOOK_RATE")/s offered | final **$(fmt_int "$wf")/s** ($(ratio "$wf" "$ef")× phase 3 without an endpoint; accepted $(fmt_int "$(val "$W" accepted_rps_window)")/s; not yet final $(fmt_int "$(val "$W" pending_start)") → $(fmt_int "$(val "$W" pending_end)")); webhooks delivered **$(fmt_int "$WH_RATE_A")/s** ($(fmt_int "$(val "$WA" distinct)") during the load, of $(fmt_int "$WH_ALL_END") queued by its end; $WH_PER_MSG per message once all were final; $(fmt_int "$WH_QUEUED_END") queued at its end, $(fmt_int "$WH_LEFT_A") once the messages drained, deleted with the endpoint in $(fmt1 "$(val "$OUT/webhook-delete-a.txt" delete_s)") s); lag p50 $(ms "$(val "$WA" lag_p50_ms)") / p99 $(ms "$(val "$WA" lag_p99_ms)") ms (a growing queue's age) | | | $(ratio "$wf" "$BASE_RPS") |"
    if [[ -f "$WB" ]]; then
      echo "| 10b | webhooks at a rate the dispatcher keeps up with: $(fmt_int "$WEBHOOK_RATE_B") messages/s offered (60% of 10a's delivery rate), $WEBHOOK_B, fresh endpoint | $(fmt_int "$(val "$WB" distinct)") webhooks delivered ($(fmt_int "$(val "$WB" rate_per_s)")/s); delivery lag (arrival − event time) p50 **$(ms "$(val "$WB" lag_p50_ms)")** / p99 **$(ms "$(val "$WB" lag_p99_ms)")** ms (max $(ms "$(val "$WB" lag_max_ms)")); queue $( [[ "$(val "$WDB" reached)" == true ]] && echo "empty $(fmt1 "$(val "$WDB" waited_s)") s after the messages drained" || echo "**not empty $WEBHOOK_DRAIN after the messages drained: $(fmt_int "$(val "$WDB" value)") left**"); duplicates $(val "$WB" duplicates), out of order $(val "$WB" out_of_order), bad signatures $(val "$WB" verified_bad) (10a: $(val "$WA" duplicates), $(val "$WA" out_of_order), $(val "$WA" verified_bad)) | | | |"
    fi
  fi
  if [[ -f "$M" ]]; then
    local mf md ms_
    mf="$(val "$M" final_rps_window)" md="$(val "$M" delivered_rps_window)" ms_="$OUT/loadgen-smpp-sim.txt"
    echo "| 11 | SMPP: processor with SMS_CARRIER=smpp to OpenSMPP's SMSC simulator (scripts/smsc.sh, every receipt DELIVRD), $SMPP_BINDS binds × window $SMPP_WINDOW, $SMPP at $(fmt_int "$SMPP_RATE")/s offered | SENT (submit_sm_resp) **$(fmt_int "$mf")/s**; DELIVERED **$(fmt_int "$md")/s** (receipts settled $(fmt_int "$(val "$M" receipted_rps_window)")/s; accepted $(fmt_int "$(val "$M" accepted_rps_window)")/s; not yet final $(fmt_int "$(val "$M" pending_start)") → $(fmt_int "$(val "$M" pending_end)"); all receipts in $(fmt1 "${DRAIN_SMPP:-?}") s after the load); simulator peak RSS ${SMSC_HWM:-?} MB. CPU per message (each party's idle CPU taken off), SMPP: $(cpu_per_msg "$OUT/cpu-smpp.0" "$OUT/cpu-smpp.1" "$OUT/cpu-idle-smpp.0" "$OUT/cpu-idle-smpp.1"); simulated carrier at the same rate (11a: $(fmt_int "$(val "$ms_" final_rps_window)") sent/s, $(fmt_int "$(val "$ms_" receipted_rps_window)") receipts/s): $(cpu_per_msg "$OUT/cpu-smpp-sim.0" "$OUT/cpu-smpp-sim.1" "$OUT/cpu-idle-smpp-sim.0" "$OUT/cpu-idle-smpp-sim.1"); phase 3 (simulated carrier at full speed): $(cpu_per_msg "$OUT/cpu-e2e.0" "$OUT/cpu-e2e.1") | | | $(ratio "$md" "$BASE_RPS") |"
  fi
  if [[ -f "$OUT/wrk-inbound.kv" ]]; then
    echo "| 12a | inbound: \`POST /v1/internal/inbound\` (the processor's hand-over) to a number of the benchmark's account, wrk -t$WRK_THREADS -c$INBOUND_CONNS closed loop, $INBOUND | **$(fmt_int "$INBOUND_RPS") inbound/s**; non-2xx: $(val "$OUT/wrk-inbound.kv" status); p50 $(fmt2 "$(val "$OUT/wrk-inbound.kv" p50_ms)") / p99 $(fmt2 "$(val "$OUT/wrk-inbound.kv" p99_ms)") ms; API CPU $(api_ms_per_req inbound) ms per message | | | $(ratio "$INBOUND_RPS" "$BASE_RPS") |"
  fi
  if [[ -n "${MO_STORED:-}" ]]; then
    echo "| 12b | inbound through the SMSC: $MO_COUNT × \`scripts/smsc.sh mo\` ($MO_PAR at a time) → deliver_sm → processor (SMPP, 1 bind) → API | all $MO_STORED stored $(fmt1 "$MO_ALL_S") s after the first: **$(awk -v n="$MO_STORED" -v t="$MO_ALL_S" 'BEGIN { printf "%.1f", n / t }') inbound/s**; the mo commands alone took $(fmt1 "$MO_SENT_S") s ($(awk -v n="$MO_COUNT" -v t="$MO_SENT_S" 'BEGIN { printf "%.1f", n / t }')/s: the script and the simulator set the pace)$( ((${MO_FAILED:-0} == 0)) || echo "; **$MO_FAILED mo commands failed**") | | | |"
  fi
  if [[ -f "$OUT/loadgen-supp-b2.txt" ]]; then
    local f
    f() { echo "p50 $(fmt2 "$(val "$OUT/loadgen-$1.txt" p50_ms)") / p99 $(fmt2 "$(val "$OUT/loadgen-$1.txt" p99_ms)") ms, API $(api_ms_per_202 "$1") ms CPU"; }
    echo "| 12c | opt-out check on \`POST /v1/messages\`: open loop at $(fmt_int "$SUPP_RATE")/s, processor running (delay 0), alternated A B A B, $SUPP each: account without suppressions (A) vs with $(fmt_int "${SUPP_TOTAL:-?}") (B, held in the API's memory; recipients never suppressed) | A1: $(f supp-a1); B1: $(f supp-b1); A2: $(f supp-a2); B2: $(f supp-b2) per message; B/A of the API's CPU per message: **$(awk -v a="$(api_ms_per_202 supp-a1)" -v b="$(api_ms_per_202 supp-a2)" -v c="$(api_ms_per_202 supp-b1)" -v d="$(api_ms_per_202 supp-b2)" 'BEGIN { if (a + b > 0) printf "%.2f", (c + d) / (a + b); else print "?" }')** (A2/A1: $(awk -v a="$(api_ms_per_202 supp-a1)" -v b="$(api_ms_per_202 supp-a2)" 'BEGIN { if (a > 0) printf "%.2f", b / a; else print "?" }'), the noise between runs of one arm); non-202: $(( $(val "$OUT/loadgen-supp-a1.txt" non202) + $(val "$OUT/loadgen-supp-a2.txt" non202) )) / $(( $(val "$OUT/loadgen-supp-b1.txt" non202) + $(val "$OUT/loadgen-supp-b2.txt" non202) )) | | | |"
  fi
  return 0
}

{
  echo "## smsctl benchmark $RUN_ID"
  echo
  echo "\`$( [[ "$QUICK" == 1 ]] && echo "BENCH_QUICK=1 ")bench/run.sh\` on $(nproc) cores ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/MemTotal/ { printf "%.0f GB", $2 / 1048576 }' /proc/meminfo) RAM;"
  echo "smsctl ${SMSCTL_VERSION:-?}; PostgreSQL $PG_VERSION (synchronous_commit=$PG_SYNC, fsync=$PG_FSYNC, full_page_writes=$PG_FPW, wal_sync_method=$PG_WALSYNC);"
  echo "Apache Kafka ${KAFKA_VERSION:-?} ($(kafka_desc)); load: wrk -t$WRK_THREADS -c$WRK_CONNS, bench/loadgen (open loop, GOMAXPROCS=$LOADGEN_PROCS, $LOADGEN_CONNS connections, $LOADGEN_CLIENT client), all on this machine."
  [[ -n "$USER_OVERRIDES" ]] && echo "Settings passed to the roles: \`$USER_OVERRIDES\`"
  echo "Every processor runs with SMS_MAX_IN_FLIGHT=$MAX_IN_FLIGHT (BENCH_MAX_IN_FLIGHT)."
  noisy=""
  for ph in echo saturation-api saturation latency e2e sim batch100 batch1000 sched-during webhooks webhooks-b smpp-sim smpp inbound supp-a1 supp-b1 supp-a2 supp-b2; do
    [[ -f "$OUT/cpu-$ph.1" ]] || continue
    o="$(cpu_others "$OUT/cpu-$ph.0" "$OUT/cpu-$ph.1")"
    ((${o:-0} > 20)) && noisy+="$ph ${o}%, "
  done
  if [[ -n "$noisy" ]]; then
    echo
    echo "**Noisy machine**: processes not started by the benchmark used a share of one core during ${noisy%, } (load average up to $(echo "$LOAD_BEFORE $LOAD_BASE $LOAD_SAT $LOAD_LAT $LOAD_E2E $LOAD_SIM $LOAD_AFTER ${LOAD_BATCH:-} ${LOAD_PRIO:-} ${LOAD_SCHED:-} ${LOAD_WH:-} ${LOAD_SMPP:-}" | tr ' ' '\n' | sort -g | tail -1)); absolute figures are low by an unknown amount, ratios to the baseline less so."
  fi
  echo
  echo "| # | figure | measured | target | met | vs baseline |"
  echo "|---|---|---|---|---|---|"
  echo "| 0 | baseline: echo server decoding the same JSON, 202, nothing stored (wrk, $BASELINE) | $(fmt_int "$BASE_RPS") POST/s | | | 1.00 |"
  echo "| 1 | accepted \`POST /v1/messages\`/s at saturation, API alone (wrk, $SATURATION; processor not started, its work waits in Kafka) | **$(fmt_int "$SAT_API_RPS")/s**; non-202: $SAT_API_NON; socket errors: $SAT_API_SOCK | ≥ 15,000 (aim 20,000) | $(yes_no "$SAT_API_RPS >= 15000 && $SAT_API_NON == 0") | $(ratio "$SAT_API_RPS" "$BASE_RPS") (≥ 0.45: $(yes_no "$SAT_API_RPS >= 0.45 * $BASE_RPS")) |"
  echo "| 1 | the same with the processor running (delay 0) on the same 2 cores | **$(fmt_int "$SAT_RPS")/s**; non-202: $SAT_NON; socket errors: $SAT_SOCK | ≥ 15,000 (aim 20,000) | $(yes_no "$SAT_RPS >= 15000 && $SAT_NON == 0") | $(ratio "$SAT_RPS" "$BASE_RPS") (≥ 0.45: $(yes_no "$SAT_RPS >= 0.45 * $BASE_RPS")) |"
  echo "| 2 | POST latency at $(fmt_int "$LATENCY_RATE")/s offered, open loop, $LATENCY | p50 **$(fmt2 "$(val "$L" p50_ms)")** / p99 **$(fmt2 "$(val "$L" p99_ms)")** / p99.9 **$(fmt2 "$(val "$L" p999_ms)")** ms (max $(fmt1 "$(val "$L" max_ms)")); non-202: $(val "$L" non202), errors: $(( $(val "$L" transport_errors) + $(val "$L" skipped) ))$base_lat; generator late > 1 ms on $(awk -v a="$(val "$L" gen_late_over_1ms)" -v n="$(val "$L" requests)" 'BEGIN { printf "%.1f", 100 * a / n }')% of sends | p99 ≤ 10 ms | $(yes_no "$(val "$L" p99_ms) <= 10 && $(val "$L" non202) == 0") | p99 $(ratio "$(val "$L" p99_ms)" "$(val "$EL" p99_ms 2>/dev/null || echo 0)")× echo |"
  echo "| 3 | end to end: final statuses/s, delay 0, 10% failures, $E2E at $(fmt_int "$E2E_RATE")/s offered | **$(fmt_int "$E2E_FINAL")/s** (accepted $(fmt_int "$(val "$E" accepted_rps_window)")/s; non-202: $(val "$E" non202); not sent or timed out: $(fmt_int "$(gen_errors "$E")")); consumer lag start $(fmt_int "$LAG_S") → end $(fmt_int "$LAG_E") (max $(fmt_int "$(val "$E" lag_max)")); messages not yet final $(fmt_int "$PEND_S") → $(fmt_int "$PEND_E") ($(where_backlog "$E")); p99 POST $(fmt1 "$(val "$E" p99_ms)") ms | ≥ 10,000/s (aim 20,000), lag not growing | $(yes_no "$E2E_FINAL >= 10000") / backlog steady: $LAG_OK | $(ratio "$E2E_FINAL" "$BASE_RPS") |"
  echo "| 4 | default simulation (1–3 s): final statuses/s, $SIM at $(fmt_int "$SIM_RATE")/s offered | **$(fmt_int "$SIM_FINAL")/s**; in flight avg **$(fmt_int "$INFL_AVG")**, max $(fmt_int "$INFL_MAX") (accepted $(fmt_int "$(val "$S" accepted_rps_window)")/s; not sent or timed out: $(fmt_int "$(gen_errors "$S")")); lag $(fmt_int "$(val "$S" lag_start)") → $(fmt_int "$(val "$S" lag_end)"); not yet final $(fmt_int "$(val "$S" pending_start)") → $(fmt_int "$(val "$S" pending_end)") ($(where_backlog "$S")) | ≥ 10,000/s, ≥ 20,000 in flight | $(yes_no "$SIM_FINAL >= 10000") / $(yes_no "$INFL_AVG >= 20000") | $(ratio "$SIM_FINAL" "$BASE_RPS") |"
  echo "| 5 | peak RSS (VmHWM): serve api / serve processor | api **$API_HWM MB** (after saturation: $API_RSS_SAT MB; after phases 7–11: ${API_HWM_END:-?} MB); processor **$PROC2_HWM MB** default simulation, $PROC1_HWM MB delay 0 | api ≤ 150 MB, processor ≤ 300 MB | $(yes_no "$API_HWM <= 150") / $(yes_no "$PROC_HWM_MAX <= 300") | |"
  echo "| 5 | \`serve api\` start → /readyz 200 (polled every 5 ms from exec) | **$(fmt1 "$API_READY_MS") ms** (median of ${#READY_LIST[@]}: $(printf '%s\n' "${READY_LIST[@]}" | awk '{ printf "%s%.0f", (NR > 1 ? ", " : ""), $1 }') ms; processor, joined to its group: $(fmt1 "$PROC1_READY_MS") ms, $(fmt1 "$PROC2_READY_MS") ms) | ≤ 300 ms | $(yes_no "$API_READY_MS <= 300") | |"
  wave2_rows
  echo "| 6 | loss check: stored == 202s, all final after the drain | stored $(fmt_int "$STORED") = $(fmt_int "$ANSWERED_202") 202s + $(fmt_int "$BATCH_ACCEPTED") accepted in batches + $EXTRA_WRK cut off by wrk's stop + $(fmt_int "$EXTRA_LOADGEN") timed out at the generator$( ((EXTRA_BATCH == 0)) || echo " + $EXTRA_BATCH in batches whose answer never came"); $( ((LOSS_OK)) && echo "0 lost" || echo "**LOSS: see below**"); pending at end: $PENDING_END; final drain $(fmt1 "$DRAIN4") s (after phase 1: $(fmt1 "$DRAIN0") s API alone, $(fmt1 "$DRAIN1") s, 2: $(fmt1 "$DRAIN2") s, 3: $(fmt1 "$DRAIN3") s$(wave2_drains)) | 0 lost | $( ((LOSS_OK)) && echo yes || echo "**no**") | |"
  echo
  echo "CPU, % of one core, by phase (others = processes not started by the benchmark, e.g. concurrent tests):"
  echo
  echo "- baseline: $(cpu_split "$OUT/cpu-echo.0" "$OUT/cpu-echo.1")"
  echo "- saturation, API alone: $(cpu_split "$OUT/cpu-saturation-api.0" "$OUT/cpu-saturation-api.1")"
  echo "- saturation: $(cpu_split "$OUT/cpu-saturation.0" "$OUT/cpu-saturation.1")"
  echo "- latency: $(cpu_split "$OUT/cpu-latency.0" "$OUT/cpu-latency.1")"
  echo "- end to end: $(cpu_split "$OUT/cpu-e2e.0" "$OUT/cpu-e2e.1")"
  echo "- default simulation: $(cpu_split "$OUT/cpu-sim.0" "$OUT/cpu-sim.1")"
  for ph in "batch100:batches of 100" "batch1000:batches of 1,000" "priority:priority (while tracking)" "sched-during:scheduler release" "webhooks:webhooks 10a" "webhooks-b:webhooks 10b" "smpp-sim:simulated carrier at the SMPP rate" "smpp:SMPP" "mo:inbound through the SMSC" "inbound:inbound, internal route" "supp-a1:opt-out A1" "supp-b1:opt-out B1" "supp-a2:opt-out A2" "supp-b2:opt-out B2"; do
    [[ -f "$OUT/cpu-${ph%%:*}.1" ]] && echo "- ${ph#*:}: $(cpu_split "$OUT/cpu-${ph%%:*}.0" "$OUT/cpu-${ph%%:*}.1")"
  done
  echo
  echo "CPU per message, ms, by party (kafka: $( ((KAFKA_NODES > 1)) && echo "all $KAFKA_NODES brokers" || echo "the broker"); PostgreSQL: pg_bench + pg_server):"
  echo
  echo "- 1 saturation, API alone, per accepted POST: $(PER_RATE="$SAT_API_RPS" cpu_per_msg "$OUT/cpu-saturation-api.0" "$OUT/cpu-saturation-api.1")"
  echo "- 1 saturation, processor running, per accepted POST (the processor's share is of what it did meanwhile): $(PER_RATE="$SAT_RPS" cpu_per_msg "$OUT/cpu-saturation.0" "$OUT/cpu-saturation.1")"
  echo "- 3 end to end, per message past PENDING: $(cpu_per_msg "$OUT/cpu-e2e.0" "$OUT/cpu-e2e.1")"
  echo
  echo "Load average (1/5/15 min): before $LOAD_BEFORE; baseline $LOAD_BASE; saturation, API alone $LOAD_SAT_API; saturation $LOAD_SAT; latency $LOAD_LAT; end to end $LOAD_E2E; simulation $LOAD_SIM; after $LOAD_AFTER$(
    [[ -z "${LOAD_BATCH:-}" ]] || echo "; batch $LOAD_BATCH")$([[ -z "${LOAD_PRIO:-}" ]] || echo "; priority $LOAD_PRIO")$(
    [[ -z "${LOAD_SCHED:-}" ]] || echo "; scheduler $LOAD_SCHED")$([[ -z "${LOAD_WH:-}" ]] || echo "; webhooks $LOAD_WH")$(
    [[ -z "${LOAD_SMPP:-}" ]] || echo "; SMPP $LOAD_SMPP")$([[ -z "${LOAD_INBOUND:-}" ]] || echo "; inbound $LOAD_INBOUND")$(
    [[ -z "${LOAD_SUPP:-}" ]] || echo "; opt-out A/B $LOAD_SUPP")."
  echo "Receipts (the simulated carrier sends them by default, 0.1–2 s after the call): share of the messages the carrier accepted whose receipt was recorded by the end (DELIVERED, UNDELIVERED or EXPIRED; the rest stay SENT): $(receipt_shares)."
  echo "Loss check per phase (each phase sends from its own sender): $(IFS=';'; echo "${LOSS_LINES[*]}" | sed 's/;/; /g')."
  echo "Run time $((SECONDS - T_START)) s. Raw outputs: bench/results/$RUN_ID/."
  [[ -n "${PROFILES_TAKEN:-}" ]] && echo "**Profiled run** (BENCH_PROFILE=1: pprof adds a little overhead): CPU profiles in bench/results/$RUN_ID/*.pprof, summaries in *.top.txt (\`go tool pprof -http=: $ROLE_BIN <file>\`)."
  for n in "${STATUS_NOTES[@]+"${STATUS_NOTES[@]}"}"; do echo; echo "$n"; done
} >"$REPORT"

echo
cat "$REPORT"
log "done in $((SECONDS - T_START))s; table in $REPORT"
((LOSS_OK)) || exit 3
