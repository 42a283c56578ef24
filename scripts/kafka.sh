#!/usr/bin/env bash
# scripts/kafka.sh — run a real single-node Apache Kafka broker (KRaft, no Docker)
# for local development, integration and fault tests.
#
# The broker jars come from Maven Central through `mvn` (scripts/kafka/pom.xml) and
# are cached; the broker runs as a plain `java` process in the background.
#
# Usage: scripts/kafka.sh {start|stop|restart|status|fetch|clean|logs}
#   start    fetch jars if needed, format storage on first start, start the broker in
#            the background and wait until it serves requests; prints the bootstrap
#            address (127.0.0.1:PORT) on stdout, nothing else. If it is already
#            running it just prints the address.
#   stop     SIGTERM, wait up to 30s for a clean shutdown, then SIGKILL. Data is kept,
#            so a later `start` resumes with the same topics and offsets.
#   restart  stop then start (prints the address).
#   status   prints "running pid=N addr=127.0.0.1:PORT" (exit 0) or "stopped" (exit 3).
#   fetch    only resolve/download the jars into the cache; prints the libs dir.
#   clean    stop and delete the state dir (data, logs, config).
#   logs     print the path of the broker log file.
#
# Environment (all optional):
#   SMS_KAFKA_VERSION   Kafka version to fetch            (default 4.3.1)
#   SMS_KAFKA_HOME      cache dir holding libs/           (default ~/.cache/smsctl/kafka-VERSION)
#   SMS_KAFKA_STATE     state dir: data, config, pid, log (default /tmp/smsctl-kafka)
#   SMS_KAFKA_PORT      PLAINTEXT listener port; the controller uses PORT+1 (default 19092)
#   SMS_KAFKA_HEAP_OPTS JVM heap flags                    (default "-Xmx512m -Xms256m")
#   SMS_KAFKA_JVM_OPTS  extra JVM flags appended to the defaults
#   SMS_KAFKA_START_TIMEOUT  seconds to wait for the broker to be ready (default 60)
#   SMS_KAFKA_STOP_TIMEOUT   seconds to wait after SIGTERM before SIGKILL (default 30)
#   JAVA_HOME / JAVA    java to use (Java 17+ required); MVN: maven command (default mvn)
#
# Progress and errors go to stderr; only `start`/`restart` (address), `status`, `fetch`
# and `logs` write to stdout.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
POM="$SCRIPT_DIR/kafka/pom.xml"

KAFKA_VERSION="${SMS_KAFKA_VERSION:-4.3.1}"
KAFKA_HOME="${SMS_KAFKA_HOME:-${HOME:-/tmp}/.cache/smsctl/kafka-$KAFKA_VERSION}"
STATE="${SMS_KAFKA_STATE:-/tmp/smsctl-kafka}"
[[ "$STATE" == /* ]] || STATE="$(pwd)/$STATE"
[[ "$KAFKA_HOME" == /* ]] || KAFKA_HOME="$(pwd)/$KAFKA_HOME"
PORT="${SMS_KAFKA_PORT:-19092}"
HOST=127.0.0.1
START_TIMEOUT="${SMS_KAFKA_START_TIMEOUT:-60}"
STOP_TIMEOUT="${SMS_KAFKA_STOP_TIMEOUT:-30}"
HEAP_OPTS="${SMS_KAFKA_HEAP_OPTS:--Xmx512m -Xms256m}"
MVN="${MVN:-mvn}"
LIBS="$KAFKA_HOME/libs"

if [[ -n "${JAVA:-}" ]]; then
  :
elif [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
  JAVA="$JAVA_HOME/bin/java"
else
  JAVA=java
fi

DATA_DIR="$STATE/data"
CONF="$STATE/server.properties"
LOG4J_CONF="$STATE/log4j2.properties"
PID_FILE="$STATE/kafka.pid"
LOG_FILE="$STATE/kafka.log"
LOCK_FILE="$STATE/.lock"
ADDR="$HOST:$PORT"

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { printf 'kafka.sh: error: %s\n' "$*" >&2; exit 1; }

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2
}

validate_settings() {
  [[ "$PORT" =~ ^[0-9]+$ ]] && (( PORT > 0 && PORT < 65535 )) \
    || die "SMS_KAFKA_PORT must be a port number below 65535 (got '$PORT')"
  [[ "$START_TIMEOUT" =~ ^[0-9]+$ ]] || die "SMS_KAFKA_START_TIMEOUT must be a whole number of seconds"
  [[ "$STOP_TIMEOUT" =~ ^[0-9]+$ ]] || die "SMS_KAFKA_STOP_TIMEOUT must be a whole number of seconds"
}

# Serialize concurrent invocations (e.g. parallel test packages) on the same state dir.
take_lock() {
  mkdir -p "$STATE"
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$LOCK_FILE"
    flock -w 120 9 || die "another kafka.sh holds $LOCK_FILE for over 120s"
  fi
}

check_java() {
  command -v "$JAVA" >/dev/null 2>&1 || die "java not found (set JAVA_HOME or JAVA); Java 17+ is required"
  local v
  v="$("$JAVA" -version 2>&1 | awk -F'"' '/version/ {print $2; exit}')"
  local major="${v%%.*}"
  [[ "$major" == 1 ]] && major="$(echo "$v" | cut -d. -f2)"
  [[ "$major" =~ ^[0-9]+$ ]] || die "cannot tell the version of $JAVA (got '$v')"
  (( major >= 17 )) || die "Kafka $KAFKA_VERSION needs Java 17+, but $JAVA is $v"
}

# ---------------------------------------------------------------- fetch

libs_ready() { [[ -f "$LIBS/.complete" ]] && [[ "$(cat "$LIBS/.complete")" == "$KAFKA_VERSION" ]]; }

fetch() {
  if libs_ready; then
    return 0
  fi
  [[ -f "$POM" ]] || die "missing $POM"
  command -v "$MVN" >/dev/null 2>&1 || die "'$MVN' not found: Maven is needed to fetch Kafka jars"
  mkdir -p "$KAFKA_HOME"
  # Several state dirs may share one cache: only one of them downloads.
  if command -v flock >/dev/null 2>&1; then
    exec 8>"$KAFKA_HOME/.fetch.lock"
    flock -w 600 8 || die "another kafka.sh has been fetching into $KAFKA_HOME for over 600s"
    if libs_ready; then exec 8>&-; return 0; fi
    rm -rf "$KAFKA_HOME"/libs.tmp.* # left by an interrupted fetch
  fi
  local tmp
  tmp="$(mktemp -d "$KAFKA_HOME/libs.tmp.XXXXXX")"
  log "fetching Kafka $KAFKA_VERSION and its dependencies from Maven Central into $LIBS ..."
  local t0=$SECONDS mvnlog="$KAFKA_HOME/mvn-fetch.log"
  if ! "$MVN" -B -q -f "$POM" \
        -Dkafka.version="$KAFKA_VERSION" \
        -DoutputDirectory="$tmp" \
        -DincludeScope=runtime \
        -Dmdep.overWriteReleases=false \
        dependency:copy-dependencies >"$mvnlog" 2>&1; then
    rm -rf "$tmp"
    tail -n 30 "$mvnlog" >&2 || true
    die "mvn failed to resolve org.apache.kafka:kafka_2.13:$KAFKA_VERSION (full output: $mvnlog)"
  fi
  ls "$tmp"/kafka_2.13-"$KAFKA_VERSION".jar >/dev/null 2>&1 \
    || { rm -rf "$tmp"; die "mvn succeeded but kafka_2.13-$KAFKA_VERSION.jar is missing"; }
  echo "$KAFKA_VERSION" >"$tmp/.complete"
  rm -rf "$LIBS"
  mv "$tmp" "$LIBS"
  log "fetched $(ls "$LIBS"/*.jar | wc -l) jars ($(du -sh "$LIBS" | cut -f1)) in $((SECONDS - t0))s"
  exec 8>&-
}

# ---------------------------------------------------------------- process helpers

# Prints the broker pid if the pid file points at our live broker process.
running_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid
  pid="$(cat "$PID_FILE" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  # Guard against pid reuse: the process must be a kafka.Kafka using our config.
  local cmd
  cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
  [[ "$cmd" == *kafka.Kafka*"$CONF"* ]] || return 1
  echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

write_configs() {
  local ctrl_port=$((PORT + 1))
  mkdir -p "$DATA_DIR"
  cat >"$CONF" <<EOF
# Generated by scripts/kafka.sh — rewritten on every start; edit the script instead.
# Single KRaft node acting as both broker and controller, for tests only.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$ctrl_port
listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$ctrl_port
advertised.listeners=PLAINTEXT://$HOST:$PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DATA_DIR

num.partitions=6
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true
delete.topic.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=6
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0

num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
controlled.shutdown.enable=true
EOF
  cat >"$LOG4J_CONF" <<'EOF'
# Generated by scripts/kafka.sh. Broker stdout/stderr go to kafka.log in the state dir.
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.network.name = kafka.network.RequestChannel$
logger.network.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = WARN
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
logger.appinfo.name = org.apache.kafka.common.utils.AppInfoParser
logger.appinfo.level = WARN
EOF
}

random_cluster_id() {
  # Kafka Uuid: 16 random bytes, URL-safe base64 without padding (22 chars), not starting with '-'.
  local id
  while :; do
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    [[ "$id" != -* && ${#id} -eq 22 ]] && { echo "$id"; return; }
  done
}

java_opts() {
  # shellcheck disable=SC2206
  local heap=($HEAP_OPTS)
  JAVA_OPTS=(
    "${heap[@]}"
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
    -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError
    # C1 only: a test broker needs fast startup more than peak throughput; on 2 busy
    # cores this roughly halves the time to "started" (e.g. 13s -> 7s).
    -XX:TieredStopAtLevel=1
    -Djava.awt.headless=true
    -Dlog4j2.configurationFile="$LOG4J_CONF"
    -Dkafka.logs.dir="$STATE"
  )
  if [[ -n "${SMS_KAFKA_JVM_OPTS:-}" ]]; then
    # shellcheck disable=SC2206
    JAVA_OPTS+=(${SMS_KAFKA_JVM_OPTS})
  fi
  JAVA_OPTS+=(-cp "$LIBS/*")
}

format_storage() {
  if [[ -f "$DATA_DIR/meta.properties" ]]; then
    return 0
  fi
  local cid
  cid="$(random_cluster_id)"
  log "formatting storage in $DATA_DIR (cluster id $cid)"
  java_opts
  if ! "$JAVA" "${JAVA_OPTS[@]}" kafka.tools.StorageTool format \
        --cluster-id "$cid" --config "$CONF" --ignore-formatted </dev/null >>"$STATE/format.log" 2>&1 8>&- 9>&-; then
    tail -n 20 "$STATE/format.log" >&2 || true
    die "formatting Kafka storage failed (see $STATE/format.log)"
  fi
}

READY_PATTERN='Kafka Server started|Transition from STARTING to STARTED'

# Ready = our process alive, PLAINTEXT port accepting, and the broker logged that it started.
wait_ready() {
  local pid="$1" offset="${2:-0}" deadline=$((SECONDS + START_TIMEOUT))
  while (( SECONDS < deadline )); do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "broker exited during startup; last lines of $LOG_FILE:"
      tail -c +"$((offset + 1))" "$LOG_FILE" 2>/dev/null | tail -n 40 >&2 || true
      rm -f "$PID_FILE"
      die "Kafka failed to start"
    fi
    if port_open "$PORT" && tail -c +"$((offset + 1))" "$LOG_FILE" 2>/dev/null | grep -qE "$READY_PATTERN"; then
      return 0
    fi
    sleep 0.25
  done
  log "broker not ready after ${START_TIMEOUT}s; last lines of $LOG_FILE:"
  tail -c +"$((offset + 1))" "$LOG_FILE" 2>/dev/null | tail -n 40 >&2 || true
  stop_broker >/dev/null 2>&1 || true
  die "timed out waiting for Kafka on $ADDR"
}

# ---------------------------------------------------------------- commands

start_broker() {
  local pid
  if pid="$(running_pid)"; then
    if port_open "$PORT"; then
      echo "$ADDR"
      return 0
    fi
    # Running but not answering yet (e.g. a concurrent start): wait for it.
    wait_ready "$pid" 0
    echo "$ADDR"
    return 0
  fi
  rm -f "$PID_FILE"
  check_java
  fetch
  if port_open "$PORT"; then
    die "port $PORT on $HOST is already in use by another process (set SMS_KAFKA_PORT)"
  fi
  if port_open $((PORT + 1)); then
    die "controller port $((PORT + 1)) on $HOST is already in use by another process (set SMS_KAFKA_PORT)"
  fi
  write_configs
  format_storage
  java_opts
  local t0=$SECONDS
  log "starting Kafka $KAFKA_VERSION on $ADDR (state $STATE, log $LOG_FILE)"
  {
    echo "===== $(date -u +%Y-%m-%dT%H:%M:%SZ) kafka.sh start ====="
  } >>"$LOG_FILE"
  # Readiness only looks at this run's part of the log, not at an older run's lines.
  local offset
  offset="$(stat -c %s "$LOG_FILE")"
  # setsid: own session, so the broker outlives the calling shell/test and gets no SIGINT/SIGHUP.
  # The script is not a process-group leader here, so setsid execs in place and $! is java's pid.
  # 8>&- 9>&-: the broker must not inherit (and so hold forever) the lock file descriptors.
  local detach=()
  command -v setsid >/dev/null 2>&1 && detach=(setsid)
  "${detach[@]}" "$JAVA" "${JAVA_OPTS[@]}" kafka.Kafka "$CONF" </dev/null >>"$LOG_FILE" 2>&1 8>&- 9>&- &
  pid=$!
  echo "$pid" >"$PID_FILE"
  wait_ready "$pid" "$offset"
  log "Kafka ready on $ADDR (pid $pid) after $((SECONDS - t0))s"
  echo "$ADDR"
}

stop_broker() {
  local pid
  if ! pid="$(running_pid)"; then
    rm -f "$PID_FILE"
    log "Kafka is not running"
    return 0
  fi
  log "stopping Kafka (pid $pid) ..."
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + STOP_TIMEOUT)) t0=$SECONDS
  while kill -0 "$pid" 2>/dev/null && (( SECONDS < deadline )); do
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "Kafka did not exit within ${STOP_TIMEOUT}s after SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  else
    log "Kafka stopped cleanly in $((SECONDS - t0))s"
  fi
  rm -f "$PID_FILE"
}

status_broker() {
  local pid
  if pid="$(running_pid)"; then
    if port_open "$PORT"; then
      echo "running pid=$pid addr=$ADDR state=$STATE"
    else
      echo "starting pid=$pid addr=$ADDR state=$STATE"
    fi
    return 0
  fi
  echo "stopped state=$STATE"
  return 3
}

clean_state() {
  stop_broker
  case "$STATE" in
    / | "${HOME:-/}" | /tmp | /root | "") die "refusing to delete state dir '$STATE'" ;;
  esac
  log "deleting $STATE"
  # Keep the lock file we hold; remove everything else.
  find "$STATE" -mindepth 1 -maxdepth 1 ! -name .lock -exec rm -rf {} +
  rm -f "$LOCK_FILE"
  rmdir "$STATE" 2>/dev/null || true
}

main() {
  local cmd="${1:-}"
  validate_settings
  case "$cmd" in
    start)   take_lock; start_broker ;;
    stop)    take_lock; stop_broker ;;
    restart) take_lock; stop_broker; start_broker ;;
    status)  status_broker ;;
    fetch)   check_java; mkdir -p "$KAFKA_HOME"; fetch; echo "$LIBS" ;;
    clean)   take_lock; clean_state ;;
    logs)    echo "$LOG_FILE" ;;
    -h | --help | help) usage ;;
    "") usage; exit 2 ;;
    *) log "unknown command '$cmd'"; usage; exit 2 ;;
  esac
}

main "$@"
