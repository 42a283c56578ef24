#!/usr/bin/env bash
# bench/run.sh: the performance benchmark of issue 7, with one command
# (`make bench` builds bin/smsctl first, then runs this).
#
# On this machine it: makes sure PostgreSQL runs (scripts/postgres.sh) and
# recreates database smsctl_bench; starts a real Apache Kafka broker
# (scripts/kafka.sh, own state dir and port); migrates; creates an API key;
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
#
# Settings (environment; durations as Go/wrk durations: 30s, 2m):
#   BENCH_QUICK=1            smoke run of about 2 minutes (short phases)
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
#   BENCH_KAFKA_WARMUP=30s   produce and fetch on a scratch topic before measuring (quick: 10s)
#   BENCH_KAFKA_JVM_OPTS     default -XX:TieredStopAtLevel=4: the broker gets
#                            the full JIT (the test rails stop at C1 for a
#                            fast start; a benchmark wants steady state)
#   BENCH_PROFILE=1          run the roles as bench/pprofwrap (smsctl + net/http/pprof)
#                            and save CPU profiles of each measured phase
#                            (<phase>-api.pprof, <phase>-processor.pprof, with -top summaries)
#   BENCH_SKIP_BASELINE_LATENCY=1  skip the echo run of the open-loop generator
#   BENCH_ALLOW_UNSAFE_PG=1  run even if synchronous_commit or fsync is off
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
else
  d_base=30s d_sat=30s d_wrkwarm=3s d_lat=20s d_e2e=60s d_e2ewarm=5s d_sim=60s d_simwarm=10s d_timeout=30s d_ready=5 d_kwarm=30s
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
DB_NAME=smsctl_bench
SMSCTL="$ROOT/bin/smsctl"
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
for v in KAFKA_WARMUP BASELINE SATURATION WRK_WARMUP LATENCY E2E E2E_WARMUP SIM SIM_WARMUP DRAIN_TIMEOUT REQUEST_TIMEOUT; do
  seconds "${!v}" >/dev/null
done
for v in E2E_RATE SIM_RATE; do
  [[ "${!v}" == auto || "${!v}" =~ ^[0-9]+$ ]] || die "BENCH_$v must be a whole number or auto (got '${!v}')"
done
for v in READY_SAMPLES WRK_THREADS WRK_CONNS LATENCY_RATE LOADGEN_PROCS LOADGEN_CONNS API_PORT PROC_PORT ECHO_PORT KAFKA_PORT; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || die "BENCH_$v must be a whole number (got '${!v}')"
done

# ---------------------------------------------------------------- cleanup

PIDS=()            # processes this script started, stopped in reverse order
declare -A NAME_OF # pid -> name
KAFKA_STARTED=0
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

kafka() { SMS_KAFKA_STATE="$KAFKA_STATE" SMS_KAFKA_PORT="$KAFKA_PORT" SMS_KAFKA_JVM_OPTS="$KAFKA_JVM_OPTS" "$ROOT/scripts/kafka.sh" "$@"; }

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
  if [[ "$KAFKA_STARTED" == 1 ]]; then
    log "stopping and deleting the benchmark's Kafka broker ($KAFKA_STATE)"
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
for t in go psql java curl awk flock; do need "$t" || die "$t is required"; done
if [[ ! -x "$SMSCTL" ]]; then
  log "bin/smsctl missing; building it"
  make -s build >&2
fi
log "building bench/loadgen and bench/echo"
CGO_ENABLED=0 go build -trimpath -o "$TOOLS/loadgen" ./bench/loadgen
CGO_ENABLED=0 go build -trimpath -o "$TOOLS/echo" ./bench/echo
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
ports=("$API_PORT" "$PROC_PORT" "$ECHO_PORT" "$KAFKA_PORT" "$((KAFKA_PORT + 1))")
[[ "$PROFILE" == 1 ]] && ports+=("${API_PPROF##*:}" "${PROC_PPROF##*:}")
for p in "${ports[@]}"; do
  port_free "$p" || die "port $p is in use (set BENCH_*_PORT)"
done

# val FILE KEY: the value of KEY=... in FILE (last one wins)
val() { awk -v k="$2" 'index($0, k "=") == 1 { v = substr($0, length(k) + 2) } END { print v }' "$1"; }
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
    [[ -n "${KAFKA_PID:-}" ]] && echo "kafka $KAFKA_PID $(ticks "$KAFKA_PID")"
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
    [[ -n "${DB_URL:-}" ]] && psql "$DB_URL" -qAtF ' ' -c "SELECT xact_commit, tup_inserted, tup_updated, tup_deleted FROM pg_stat_database WHERE datname = current_database()" 2>/dev/null |
      awk '{ print "pg_commits 0", $1; print "pg_inserted 0", $2; print "pg_updated 0", $3; print "pg_deleted 0", $4 }'
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
      n = split("api processor kafka pg_bench pg_server generator echo", k, " ")
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

log "Kafka: scripts/kafka.sh start (state $KAFKA_STATE, port $KAFKA_PORT)"
kafka clean >/dev/null 2>"$OUT/kafka-script.log" || true # a broker left by an interrupted run
KAFKA_STARTED=1
BROKERS="$(kafka start 2>>"$OUT/kafka-script.log")" || { tail -n 20 "$OUT/kafka-script.log" >&2; die "the Kafka broker did not start"; }
KAFKA_PID="$(cat "$KAFKA_STATE/kafka.pid")"
KAFKA_VERSION="$(ls "${SMS_KAFKA_HOME:-${HOME:-/tmp}/.cache/smsctl}" 2>/dev/null | sed -n 's/^kafka-//p' | sort -V | tail -1)"
log "Kafka ${KAFKA_VERSION:-?} on $BROKERS (pid $KAFKA_PID)"
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
USER_OVERRIDES="$(env | grep -E '^SMS_' | grep -vE '^SMS_(DATABASE_URL|KAFKA_BROKERS|INTERNAL_TOKEN|LOG_LEVEL|LOG_FORMAT|API_KEY|KAFKA_(STATE|PORT|HOME|JVM_OPTS|HEAP_OPTS|VERSION))=' | sort | tr '\n' ' ' || true)"

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
  start_bg "processor" "$OUT/$name.log" env SMS_API_URL="$API_URL" SMS_PROCESSOR_HTTP_ADDR="127.0.0.1:$PROC_PORT" "$@" \
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

# wrk_run NAME SENDER DURATION URL: wrk in the background while CPU is accounted.
wrk_run() {
  local name="$1" sender="$2" dur="$3" url="$4" secs pid
  secs="$(seconds "$dur")"
  BENCH_SENDER="$sender" wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"$dur" --latency -s "$ROOT/bench/post.lua" "$url/v1/messages" >"$OUT/wrk-$name.txt" 2>&1 &
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

# Phase 6: the backlog drains; then count.
log "final drain (up to $DRAIN_TIMEOUT)"
drain final
DRAIN4="$DRAIN_S"
LOAD_AFTER="$(loadavg)"
"$LOADGEN" lag -brokers "$BROKERS" >"$OUT/lag-final.txt" 2>>"$OUT/loadgen.log" || true
PROC2_HWM="$(vmhwm_mb "$PROC_PID")"
API_HWM="$(vmhwm_mb "$API_PID")"
log "stopping the roles with SIGTERM"
stop_pid "$PROC_PID" 30
PROC2_RC=$STOP_RC
stop_pid "$API_PID" 30
API_RC=$STOP_RC
[[ "$PROC2_RC" == 0 ]] || STATUS_NOTES+=("serve processor exited with status $PROC2_RC after SIGTERM (log: $OUT/$PROC_NAME.log).")
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
for ph in "api-warmup:+14155550100" "saturation-api:+14155550105" "saturation:+14155550101"; do
  name="${ph%%:*}" sender="${ph#*:}"
  got="$(wrk_ok "$name")" st="$(stored_of "$sender")"
  extra=$((st - ${got%.*}))
  cut=$((WRK_CONNS + $(wrk_sockerr "$name")))
  if ((extra < 0)); then LOSS_OK=0; LOSS_LINES+=("$name: **$((-extra)) messages answered 202 but not stored**"); fi
  if ((extra > cut)); then LOSS_OK=0; LOSS_LINES+=("$name: $extra more stored than 2xx answers (more than the $cut requests cut off by wrk's stop)"); fi
  EXTRA_WRK=$((EXTRA_WRK + extra))
  LOSS_LINES+=("$name: $(fmt_int "$got") 2xx, $(fmt_int "$st") stored (+$extra cut off by wrk's stop)")
done
for ph in "latency:+14155550102" "e2e:+14155550103" "sim:+14155550104"; do
  name="${ph%%:*}" sender="${ph#*:}" f="$OUT/loadgen-${ph%%:*}.txt"
  got="$(val "$f" ok202)" st="$(stored_of "$sender")"
  unknown=$(($(val "$f" transport_errors) + $(val "$f" unanswered)))
  extra=$((st - got))
  if ((extra < 0)); then LOSS_OK=0; LOSS_LINES+=("$name: **$((-extra)) messages answered 202 but not stored**"); fi
  if ((extra > unknown)); then LOSS_OK=0; LOSS_LINES+=("$name: $extra stored without a 202 (only $unknown requests went unanswered)"); fi
  EXTRA_LOADGEN=$((EXTRA_LOADGEN + extra))
  LOSS_LINES+=("$name: $(fmt_int "$got") 202s, $(fmt_int "$st") stored$( ((extra <= 0)) || echo " (+$extra whose request timed out at the generator, of $unknown)")")
done
PENDING_END="$(val "$C" pending)"
STORED="$(val "$C" stored)"
ANSWERED_202=0
for n in api-warmup saturation-api saturation; do ANSWERED_202=$((ANSWERED_202 + $(printf '%.0f' "$(wrk_ok $n)"))); done
for n in latency e2e sim; do ANSWERED_202=$((ANSWERED_202 + $(val "$OUT/loadgen-$n.txt" ok202))); done
[[ "$PENDING_END" == 0 ]] || LOSS_OK=0
if [[ "$(val "$C" counters_pending)" != "$PENDING_END" || "$(val "$C" counters_sent)" != "$(val "$C" sent)" || "$(val "$C" counters_failed)" != "$(val "$C" failed)" ]]; then
  STATUS_NOTES+=("The API's counters disagree with the rows: counters pending/sent/failed $(val "$C" counters_pending)/$(val "$C" counters_sent)/$(val "$C" counters_failed), rows $PENDING_END/$(val "$C" sent)/$(val "$C" failed); the per-second rates of phases 3 and 4 come from the counters.")
fi
if [[ "$(val "$C" deliveries)" != "$(( $(val "$C" sent) + $(val "$C" failed) ))" ]]; then
  STATUS_NOTES+=("processor.deliveries holds $(val "$C" deliveries) outcomes for $(( $(val "$C" sent) + $(val "$C" failed) )) final messages.")
fi

# Errors instead of 202s: say so, with the API's first logged error.
for n in saturation-api saturation latency e2e sim; do
  if [[ "$n" == saturation* ]]; then
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

{
  echo "## smsctl benchmark $RUN_ID"
  echo
  echo "\`$( [[ "$QUICK" == 1 ]] && echo "BENCH_QUICK=1 ")bench/run.sh\` on $(nproc) cores ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/MemTotal/ { printf "%.0f GB", $2 / 1048576 }' /proc/meminfo) RAM;"
  echo "smsctl ${SMSCTL_VERSION:-?}; PostgreSQL $PG_VERSION (synchronous_commit=$PG_SYNC, fsync=$PG_FSYNC, full_page_writes=$PG_FPW, wal_sync_method=$PG_WALSYNC);"
  echo "Apache Kafka ${KAFKA_VERSION:-?} (single KRaft node, scripts/kafka.sh); load: wrk -t$WRK_THREADS -c$WRK_CONNS, bench/loadgen (open loop, GOMAXPROCS=$LOADGEN_PROCS, $LOADGEN_CONNS connections, $LOADGEN_CLIENT client), all on this machine."
  [[ -n "$USER_OVERRIDES" ]] && echo "Settings passed to the roles: \`$USER_OVERRIDES\`"
  noisy=""
  for ph in echo saturation-api saturation latency e2e sim; do
    o="$(cpu_others "$OUT/cpu-$ph.0" "$OUT/cpu-$ph.1")"
    ((${o:-0} > 20)) && noisy+="$ph ${o}%, "
  done
  if [[ -n "$noisy" ]]; then
    echo
    echo "**Noisy machine**: processes not started by the benchmark used a share of one core during ${noisy%, } (load average up to $(echo "$LOAD_BEFORE $LOAD_BASE $LOAD_SAT $LOAD_LAT $LOAD_E2E $LOAD_SIM $LOAD_AFTER" | tr ' ' '\n' | sort -g | tail -1)); absolute figures are low by an unknown amount, ratios to the baseline less so."
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
  echo "| 5 | peak RSS (VmHWM): serve api / serve processor | api **$API_HWM MB** (after saturation: $API_RSS_SAT MB); processor **$PROC2_HWM MB** default simulation, $PROC1_HWM MB delay 0 | api ≤ 150 MB, processor ≤ 300 MB | $(yes_no "$API_HWM <= 150") / $(yes_no "$PROC_HWM_MAX <= 300") | |"
  echo "| 5 | \`serve api\` start → /readyz 200 (polled every 5 ms from exec) | **$(fmt1 "$API_READY_MS") ms** (median of ${#READY_LIST[@]}: $(printf '%s\n' "${READY_LIST[@]}" | awk '{ printf "%s%.0f", (NR > 1 ? ", " : ""), $1 }') ms; processor, joined to its group: $(fmt1 "$PROC1_READY_MS") ms, $(fmt1 "$PROC2_READY_MS") ms) | ≤ 300 ms | $(yes_no "$API_READY_MS <= 300") | |"
  echo "| 6 | loss check: stored == 202s, all final after the drain | stored $(fmt_int "$STORED") = $(fmt_int "$ANSWERED_202") 202s + $EXTRA_WRK cut off by wrk's stop + $(fmt_int "$EXTRA_LOADGEN") timed out at the generator; $( ((LOSS_OK)) && echo "0 lost" || echo "**LOSS: see below**"); pending at end: $PENDING_END; final drain $(fmt1 "$DRAIN4") s (after phase 1: $(fmt1 "$DRAIN0") s API alone, $(fmt1 "$DRAIN1") s, 2: $(fmt1 "$DRAIN2") s, 3: $(fmt1 "$DRAIN3") s) | 0 lost | $( ((LOSS_OK)) && echo yes || echo "**no**") | |"
  echo
  echo "CPU, % of one core, by phase (others = processes not started by the benchmark, e.g. concurrent tests):"
  echo
  echo "- baseline: $(cpu_split "$OUT/cpu-echo.0" "$OUT/cpu-echo.1")"
  echo "- saturation, API alone: $(cpu_split "$OUT/cpu-saturation-api.0" "$OUT/cpu-saturation-api.1")"
  echo "- saturation: $(cpu_split "$OUT/cpu-saturation.0" "$OUT/cpu-saturation.1")"
  echo "- latency: $(cpu_split "$OUT/cpu-latency.0" "$OUT/cpu-latency.1")"
  echo "- end to end: $(cpu_split "$OUT/cpu-e2e.0" "$OUT/cpu-e2e.1")"
  echo "- default simulation: $(cpu_split "$OUT/cpu-sim.0" "$OUT/cpu-sim.1")"
  echo
  echo "Load average (1/5/15 min): before $LOAD_BEFORE; baseline $LOAD_BASE; saturation, API alone $LOAD_SAT_API; saturation $LOAD_SAT; latency $LOAD_LAT; end to end $LOAD_E2E; simulation $LOAD_SIM; after $LOAD_AFTER."
  echo "Loss check per phase (each phase sends from its own sender): $(IFS=';'; echo "${LOSS_LINES[*]}" | sed 's/;/; /g')."
  echo "Run time $((SECONDS - T_START)) s. Raw outputs: bench/results/$RUN_ID/."
  [[ -n "${PROFILES_TAKEN:-}" ]] && echo "**Profiled run** (BENCH_PROFILE=1: pprof adds a little overhead): CPU profiles in bench/results/$RUN_ID/*.pprof, summaries in *.top.txt (\`go tool pprof -http=: $ROLE_BIN <file>\`)."
  for n in "${STATUS_NOTES[@]+"${STATUS_NOTES[@]}"}"; do echo; echo "$n"; done
} >"$REPORT"

echo
cat "$REPORT"
log "done in $((SECONDS - T_START))s; table in $REPORT"
((LOSS_OK)) || exit 3
