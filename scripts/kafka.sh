#!/usr/bin/env bash
# scripts/kafka.sh — run a real Apache Kafka broker (KRaft, no Docker), or a small
# three-broker KRaft cluster, on loopback for local development, integration and
# fault tests.
#
# The broker jars come from Maven Central through `mvn` (scripts/kafka/pom.xml) and
# are cached; each broker runs as a plain `java` process in the background.
#
# Usage: scripts/kafka.sh {start|stop|restart|status|kill N|fetch|clean|logs}
#   start    fetch jars if needed, format storage on first start, start the broker in
#            the background and wait until it serves requests; prints the bootstrap
#            address (127.0.0.1:PORT) on stdout, nothing else. If it is already
#            running it just prints the address.
#   stop     SIGTERM, wait up to 30s for a clean shutdown, then SIGKILL. Data is kept,
#            so a later `start` resumes with the same topics and offsets.
#   restart  stop then start (prints the address).
#   status   prints "running pid=N addr=127.0.0.1:PORT" (exit 0) or "stopped" (exit 3).
#   kill N   SIGKILL node N (1-based; the single broker is node 1), for fault tests.
#            Waits until the process is gone; prints nothing on stdout.
#   fetch    only resolve/download the jars into the cache; prints the libs dir.
#   clean    stop and delete the state dir (data, logs, config).
#   logs     print the path of the broker log file.
#
# Cluster mode (SMS_KAFKA_NODES=3; 2..9 also work, 3 is the tested one):
#   Every node is a combined broker+controller and the nodes form a static KRaft
#   controller quorum (controller.quorum.voters, all nodes formatted with one cluster
#   id, kept in STATE/cluster.id). Node N (1-based) listens on PORT+2(N-1) (PLAINTEXT)
#   and PORT+2(N-1)+1 (controller), so all ports lie within PORT..PORT+39.
#   State: STATE/node-N/ per node (data, server.properties, kafka.log, kafka.pid),
#   where STATE defaults to /tmp/smsctl-kafka-NODES (e.g. /tmp/smsctl-kafka-3).
#   Topic defaults: default.replication.factor=min(3,NODES), min.insync.replicas=2
#   (1 with two nodes), same for the offsets, transaction and share-state topics.
#   start    starts every node that is not running (all in parallel, so also revives
#            nodes after `kill N`), waits until each logged "started" and the cluster
#            reports all NODES brokers unfenced (so a topic created right after gets
#            full replication), then prints the bootstrap list on stdout, nothing else:
#            127.0.0.1:PORT,127.0.0.1:PORT+2,127.0.0.1:PORT+4
#   stop     SIGTERMs all nodes at once, waits, SIGKILLs the ones left.
#   status   one line per node: "running node=N pid=P addr=A state=DIR" (or
#            "starting ..." / "stopped node=N addr=A state=DIR"); exit 0 if all run,
#            3 if none, 1 if some are down.
#   logs     one log path per node.
#   Run every command with the same SMS_KAFKA_NODES/PORT/STATE as `start`.
#
# Environment (all optional):
#   SMS_KAFKA_NODES     number of nodes; 1 = the single broker (default 1)
#   SMS_KAFKA_VERSION   Kafka version to fetch            (default 4.3.1)
#   SMS_KAFKA_HOME      cache dir holding libs/           (default ~/.cache/smsctl/kafka-VERSION)
#   SMS_KAFKA_STATE     state dir: data, config, pid, log (default /tmp/smsctl-kafka;
#                       with NODES>1 the root of node-N/ (default /tmp/smsctl-kafka-NODES))
#   SMS_KAFKA_PORT      PLAINTEXT listener port; the controller uses PORT+1 (default 19092)
#   SMS_KAFKA_HEAP_OPTS JVM heap flags per broker (default "-Xmx512m -Xms256m";
#                       with NODES>1 "-Xmx384m -Xms128m")
#   SMS_KAFKA_JVM_OPTS  extra JVM flags appended to the defaults
#   SMS_KAFKA_START_TIMEOUT  seconds to wait for the broker (cluster) to be ready
#                            (default 60; with NODES>1 120)
#   SMS_KAFKA_STOP_TIMEOUT   seconds to wait after SIGTERM before SIGKILL (default 30)
#   JAVA_HOME / JAVA    java to use (Java 17+ required); MVN: maven command (default mvn)
#
# Progress and errors go to stderr; only `start`/`restart` (address), `status`, `fetch`
# and `logs` write to stdout.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
POM="$SCRIPT_DIR/kafka/pom.xml"

NODES="${SMS_KAFKA_NODES:-1}"
if [[ "$NODES" == 1 ]]; then
  ROOT="${SMS_KAFKA_STATE:-/tmp/smsctl-kafka}"
  DEFAULT_HEAP_OPTS="-Xmx512m -Xms256m"
  DEFAULT_START_TIMEOUT=60
else
  # Three brokers share a small machine with PostgreSQL and the Go processes.
  ROOT="${SMS_KAFKA_STATE:-/tmp/smsctl-kafka-$NODES}"
  DEFAULT_HEAP_OPTS="-Xmx384m -Xms128m"
  DEFAULT_START_TIMEOUT=120
fi
KAFKA_VERSION="${SMS_KAFKA_VERSION:-4.3.1}"
KAFKA_HOME="${SMS_KAFKA_HOME:-${HOME:-/tmp}/.cache/smsctl/kafka-$KAFKA_VERSION}"
[[ "$ROOT" == /* ]] || ROOT="$(pwd)/$ROOT"
[[ "$KAFKA_HOME" == /* ]] || KAFKA_HOME="$(pwd)/$KAFKA_HOME"
PORT="${SMS_KAFKA_PORT:-19092}"
HOST=127.0.0.1
START_TIMEOUT="${SMS_KAFKA_START_TIMEOUT:-$DEFAULT_START_TIMEOUT}"
STOP_TIMEOUT="${SMS_KAFKA_STOP_TIMEOUT:-30}"
HEAP_OPTS="${SMS_KAFKA_HEAP_OPTS:-$DEFAULT_HEAP_OPTS}"
MVN="${MVN:-mvn}"
LIBS="$KAFKA_HOME/libs"

if [[ -n "${JAVA:-}" ]]; then
  :
elif [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
  JAVA="$JAVA_HOME/bin/java"
else
  JAVA=java
fi

LOCK_FILE="$ROOT/.lock"

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { printf 'kafka.sh: error: %s\n' "$*" >&2; exit 1; }

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2
}

multi() { (( NODES > 1 )); }

# Points the per-node globals at node $1 (1-based). Node N listens on PORT+2(N-1)
# and its controller on the port after; the single broker is node 1 in STATE itself.
select_node() {
  NODE="$1"
  NODE_PORT=$((PORT + 2 * (NODE - 1)))
  CTRL_PORT=$((NODE_PORT + 1))
  if multi; then
    STATE="$ROOT/node-$NODE"
    P="node $NODE: " # prefix of progress messages
  else
    STATE="$ROOT"
    P=""
  fi
  DATA_DIR="$STATE/data"
  CONF="$STATE/server.properties"
  LOG4J_CONF="$STATE/log4j2.properties"
  PID_FILE="$STATE/kafka.pid"
  LOG_FILE="$STATE/kafka.log"
  ADDR="$HOST:$NODE_PORT"
}

bootstrap_list() {
  local i out=""
  for ((i = 1; i <= NODES; i++)); do
    out+="${out:+,}$HOST:$((PORT + 2 * (i - 1)))"
  done
  echo "$out"
}

quorum_voters() {
  local i out=""
  for ((i = 1; i <= NODES; i++)); do
    out+="${out:+,}$i@$HOST:$((PORT + 2 * (i - 1) + 1))"
  done
  echo "$out"
}

all_nodes() {
  local i
  for ((i = 1; i <= NODES; i++)); do echo "$i"; done
}

validate_settings() {
  [[ "$NODES" =~ ^[1-9]$ ]] || die "SMS_KAFKA_NODES must be a number of nodes from 1 to 9 (got '$NODES')"
  [[ "$PORT" =~ ^[0-9]+$ ]] && (( PORT > 0 && PORT < 65535 )) \
    || die "SMS_KAFKA_PORT must be a port number below 65535 (got '$PORT')"
  (( PORT + 2 * NODES - 1 <= 65535 )) || die "SMS_KAFKA_PORT $PORT leaves no room for $NODES nodes (2 ports each)"
  [[ "$START_TIMEOUT" =~ ^[0-9]+$ ]] || die "SMS_KAFKA_START_TIMEOUT must be a whole number of seconds"
  [[ "$STOP_TIMEOUT" =~ ^[0-9]+$ ]] || die "SMS_KAFKA_STOP_TIMEOUT must be a whole number of seconds"
}

# Serialize concurrent invocations (e.g. parallel test packages) on the same state dir.
take_lock() {
  mkdir -p "$ROOT"
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

# Alive and not a zombie: where nothing reaps orphans (a container without an init),
# a dead broker would otherwise look alive forever.
proc_alive() {
  kill -0 "$1" 2>/dev/null || return 1
  local st
  st="$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1 || true)"
  [[ "$st" != Z ]] && return 0
  # The JVM's main thread may exit while others still shut down: the process then shows
  # Z but has more than one task.
  local tasks=("/proc/$1/task"/*)
  (( ${#tasks[@]} > 1 ))
}

# Prints the selected node's broker pid if its pid file points at our live broker process.
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
  local what="Single KRaft node acting as both broker and controller, for tests only."
  local voters="1@$HOST:$CTRL_PORT" rf=1 isr=1
  if multi; then
    what="Node $NODE of a $NODES-node KRaft cluster; each node is both broker and controller, for tests only."
    voters="$(quorum_voters)"
    rf=$(( NODES < 3 ? NODES : 3 ))
    isr=$(( rf < 3 ? 1 : 2 ))
  fi
  mkdir -p "$DATA_DIR"
  cat >"$CONF" <<EOF
# Generated by scripts/kafka.sh — rewritten on every start; edit the script instead.
# $what
process.roles=broker,controller
node.id=$NODE
controller.quorum.voters=$voters
listeners=PLAINTEXT://$HOST:$NODE_PORT,CONTROLLER://$HOST:$CTRL_PORT
advertised.listeners=PLAINTEXT://$HOST:$NODE_PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DATA_DIR

num.partitions=6
default.replication.factor=$rf
min.insync.replicas=$isr
auto.create.topics.enable=true
delete.topic.enable=true
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
transaction.state.log.num.partitions=6
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
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

# The one cluster id every node of a cluster is formatted with (ROOT/cluster.id).
cluster_id() {
  local f="$ROOT/cluster.id" id=""
  if [[ -s "$f" ]]; then
    cat "$f"
    return
  fi
  # cluster.id lost but some node formatted: keep that node's id.
  id="$(sed -n 's/^cluster\.id=//p' "$ROOT"/node-*/data/meta.properties 2>/dev/null | head -n 1 || true)"
  [[ -n "$id" ]] || id="$(random_cluster_id)"
  echo "$id" >"$f"
  echo "$id"
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

# Formats the selected node's storage once; $1: cluster id (default: a new random one).
# With controller.quorum.voters in the config this makes a static quorum (kraft.version 0).
format_storage() {
  if [[ -f "$DATA_DIR/meta.properties" ]]; then
    return 0
  fi
  local cid="${1:-}"
  [[ -n "$cid" ]] || cid="$(random_cluster_id)"
  log "${P}formatting storage in $DATA_DIR (cluster id $cid)"
  java_opts
  if ! "$JAVA" "${JAVA_OPTS[@]}" kafka.tools.StorageTool format \
        --cluster-id "$cid" --config "$CONF" --ignore-formatted </dev/null >>"$STATE/format.log" 2>&1 8>&- 9>&-; then
    tail -n 20 "$STATE/format.log" >&2 || true
    die "${P}formatting Kafka storage failed (see $STATE/format.log)"
  fi
}

READY_PATTERN='Kafka Server started|Transition from STARTING to STARTED'

# Ready = our process alive, PLAINTEXT port accepting, and the broker logged that it
# started (a KRaft broker logs that only once the controller has unfenced it).
# $3: deadline in $SECONDS (default START_TIMEOUT from now).
# Returns 1 if the broker exited, 2 on timeout, after showing the log's tail.
wait_ready() {
  local pid="$1" offset="${2:-0}" deadline="${3:-$((SECONDS + START_TIMEOUT))}"
  while (( SECONDS < deadline )); do
    if ! proc_alive "$pid"; then
      log "${P}broker exited during startup; last lines of $LOG_FILE:"
      tail -c +"$((offset + 1))" "$LOG_FILE" 2>/dev/null | tail -n 40 >&2 || true
      rm -f "$PID_FILE"
      return 1
    fi
    # Not `tail | grep -q`: grep stops at the first match, tail then dies of
    # SIGPIPE, and pipefail turns the match into a failure once this run's
    # log is long (a state reused for many runs logs every old group).
    if port_open "$NODE_PORT" && grep -qE "$READY_PATTERN" < <(tail -c +"$((offset + 1))" "$LOG_FILE" 2>/dev/null); then
      return 0
    fi
    sleep 0.25
  done
  log "${P}broker not ready after ${START_TIMEOUT}s; last lines of $LOG_FILE:"
  tail -c +"$((offset + 1))" "$LOG_FILE" 2>/dev/null | tail -n 40 >&2 || true
  return 2
}

check_ports_free() {
  if port_open "$NODE_PORT"; then
    die "${P}port $NODE_PORT on $HOST is already in use by another process (set SMS_KAFKA_PORT)"
  fi
  if port_open "$CTRL_PORT"; then
    die "${P}controller port $CTRL_PORT on $HOST is already in use by another process (set SMS_KAFKA_PORT)"
  fi
}

# Starts the selected node in the background; sets LAUNCH_PID and LAUNCH_OFFSET (where
# this run's part of the log begins: readiness only looks at it, not at older runs).
launch_node() {
  java_opts
  log "${P}starting Kafka $KAFKA_VERSION on $ADDR (state $STATE, log $LOG_FILE)"
  {
    echo "===== $(date -u +%Y-%m-%dT%H:%M:%SZ) kafka.sh start ====="
  } >>"$LOG_FILE"
  LAUNCH_OFFSET="$(stat -c %s "$LOG_FILE")"
  # setsid: own session, so the broker outlives the calling shell/test and gets no SIGINT/SIGHUP.
  # The script is not a process-group leader here, so setsid execs in place and $! is java's pid.
  # 8>&- 9>&-: the broker must not inherit (and so hold forever) the lock file descriptors.
  local detach=()
  command -v setsid >/dev/null 2>&1 && detach=(setsid)
  "${detach[@]}" "$JAVA" "${JAVA_OPTS[@]}" kafka.Kafka "$CONF" </dev/null >>"$LOG_FILE" 2>&1 8>&- 9>&- &
  LAUNCH_PID=$!
  echo "$LAUNCH_PID" >"$PID_FILE"
}

# ---------------------------------------------------------------- single broker

start_broker() {
  local pid rc=0
  if pid="$(running_pid)"; then
    if port_open "$NODE_PORT"; then
      echo "$ADDR"
      return 0
    fi
    # Running but not answering yet (e.g. a concurrent start): wait for it.
    wait_ready "$pid" 0 || rc=$?
    start_failed "$rc"
    echo "$ADDR"
    return 0
  fi
  rm -f "$PID_FILE"
  check_java
  fetch
  check_ports_free
  write_configs
  format_storage
  local t0=$SECONDS
  launch_node
  pid=$LAUNCH_PID
  wait_ready "$pid" "$LAUNCH_OFFSET" || rc=$?
  start_failed "$rc"
  log "Kafka ready on $ADDR (pid $pid) after $((SECONDS - t0))s"
  echo "$ADDR"
}

# Dies after a failed wait_ready (return code $1; 0: nothing to do).
start_failed() {
  case "$1" in
    0) return 0 ;;
    1) die "Kafka failed to start" ;;
    *)
      stop_nodes "$NODE" >/dev/null 2>&1 || true
      die "timed out waiting for Kafka on $ADDR"
      ;;
  esac
}

# ---------------------------------------------------------------- cluster

# All NODES brokers registered and unfenced in the cluster metadata, so that a topic
# created from now on gets the full replication factor. $1: deadline in $SECONDS.
wait_cluster() {
  local deadline="$1" n out="$ROOT/cluster-check.log" cfg="$ROOT/admin.properties"
  printf 'request.timeout.ms=5000\ndefault.api.timeout.ms=10000\n' >"$cfg"
  local limit=()
  command -v timeout >/dev/null 2>&1 && limit=(timeout 30)
  while (( SECONDS < deadline )); do
    n="$("${limit[@]}" "$JAVA" -Xmx128m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -cp "$LIBS/*" \
          org.apache.kafka.tools.ClusterTool list-endpoints --command-config "$cfg" \
          --bootstrap-server "$(bootstrap_list)" </dev/null 2>&1 8>&- 9>&- \
        | tee "$out" | awk '$NF == "broker" && $(NF-1) == "unfenced"' | wc -l)" || n=0
    if (( n == NODES )); then
      return 0
    fi
    sleep 1
  done
  log "not all $NODES brokers registered after ${START_TIMEOUT}s; last check ($out):"
  tail -n 20 "$out" >&2 || true
  return 1
}

# Starts every node that is not running, in parallel: a node can only finish starting
# once a majority of the controller quorum runs.
start_cluster() {
  local i pid all_up=1
  for i in $(all_nodes); do
    select_node "$i"
    if ! pid="$(running_pid)" || ! port_open "$NODE_PORT"; then
      all_up=0
    fi
  done
  if (( all_up )); then
    bootstrap_list
    return 0
  fi
  check_java
  fetch
  local todo=() waitn=() waitp=() waito=()
  for i in $(all_nodes); do
    select_node "$i"
    if pid="$(running_pid)"; then
      # Running but not answering yet (e.g. a concurrent start): wait for it.
      if ! port_open "$NODE_PORT"; then
        waitn+=("$i"); waitp+=("$pid"); waito+=(0)
      fi
      continue
    fi
    rm -f "$PID_FILE"
    check_ports_free
    todo+=("$i")
  done
  local t0=$SECONDS
  if (( ${#todo[@]} )); then
    local cid fpids=()
    cid="$(cluster_id)"
    for i in "${todo[@]}"; do
      select_node "$i"
      write_configs
      if [[ ! -f "$DATA_DIR/meta.properties" ]]; then
        format_storage "$cid" &
        fpids+=("$!")
      fi
    done
    for pid in ${fpids[@]+"${fpids[@]}"}; do
      wait "$pid" || exit 1
    done
    for i in "${todo[@]}"; do
      select_node "$i"
      launch_node
      waitn+=("$i"); waitp+=("$LAUNCH_PID"); waito+=("$LAUNCH_OFFSET")
    done
  fi
  local deadline=$((SECONDS + START_TIMEOUT)) k rc
  for k in "${!waitn[@]}"; do
    select_node "${waitn[k]}"
    rc=0
    wait_ready "${waitp[k]}" "${waito[k]}" "$deadline" || rc=$?
    if (( rc )); then
      local msg="${P}timed out waiting for Kafka on $ADDR"
      (( rc == 1 )) && msg="${P}Kafka failed to start"
      # Leave no half-started node behind: stop the nodes this run started.
      stop_nodes ${todo[@]+"${todo[@]}"} >/dev/null 2>&1 || true
      die "$msg"
    fi
    log "${P}Kafka ready on $ADDR (pid ${waitp[k]}) after $((SECONDS - t0))s"
  done
  if ! wait_cluster "$deadline"; then
    stop_nodes ${todo[@]+"${todo[@]}"} >/dev/null 2>&1 || true
    die "timed out waiting for all $NODES brokers to register"
  fi
  log "Kafka cluster ready: $NODES brokers registered after $((SECONDS - t0))s (state $ROOT)"
  bootstrap_list
}

# ---------------------------------------------------------------- commands

start_cmd() {
  if multi; then
    start_cluster
  else
    select_node 1
    start_broker
  fi
}

# SIGTERMs the given nodes at once, waits up to STOP_TIMEOUT for all of them (brokers
# shut down while their peers' controllers still run), then SIGKILLs the rest.
stop_nodes() {
  local i pid pids=() nodes=() t0=$SECONDS
  for i in "$@"; do
    select_node "$i"
    if ! pid="$(running_pid)"; then
      rm -f "$PID_FILE"
      log "${P}Kafka is not running"
      continue
    fi
    log "${P}stopping Kafka (pid $pid) ..."
    kill -TERM "$pid" 2>/dev/null || true
    pids+=("$pid")
    nodes+=("$i")
  done
  local deadline=$((SECONDS + STOP_TIMEOUT)) alive k
  while :; do
    alive=0
    for pid in ${pids[@]+"${pids[@]}"}; do
      if proc_alive "$pid"; then alive=1; fi
    done
    (( alive && SECONDS < deadline )) || break
    sleep 0.2
  done
  for k in ${pids[@]+"${!pids[@]}"}; do
    select_node "${nodes[k]}"
    pid="${pids[k]}"
    if proc_alive "$pid"; then
      log "${P}Kafka did not exit within ${STOP_TIMEOUT}s after SIGTERM; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      while proc_alive "$pid"; do sleep 0.1; done
    else
      log "${P}Kafka stopped cleanly in $((SECONDS - t0))s"
    fi
    rm -f "$PID_FILE"
  done
}

stop_cmd() {
  # shellcheck disable=SC2046
  stop_nodes $(all_nodes)
}

# Fault injection: SIGKILL node $1, no clean shutdown.
kill_node() {
  local n="${1:-}" pid
  [[ "$n" =~ ^[1-9][0-9]*$ ]] && (( n <= NODES )) \
    || die "kill needs a node number from 1 to $NODES (got '$n')"
  select_node "$n"
  if ! pid="$(running_pid)"; then
    rm -f "$PID_FILE"
    log "node $n: Kafka is not running"
    return 0
  fi
  kill -KILL "$pid" 2>/dev/null || true
  while proc_alive "$pid"; do sleep 0.05; done
  rm -f "$PID_FILE"
  log "node $n: killed Kafka (pid $pid, $ADDR) with SIGKILL"
}

status_broker() {
  local pid
  if pid="$(running_pid)"; then
    if port_open "$NODE_PORT"; then
      echo "running pid=$pid addr=$ADDR state=$STATE"
    else
      echo "starting pid=$pid addr=$ADDR state=$STATE"
    fi
    return 0
  fi
  echo "stopped state=$STATE"
  return 3
}

# One line per node; exit 0 if all run, 3 if none, 1 if some are down.
status_cmd() {
  if ! multi; then
    select_node 1
    status_broker
    return
  fi
  local i pid up=0
  for i in $(all_nodes); do
    select_node "$i"
    if pid="$(running_pid)"; then
      up=$((up + 1))
      if port_open "$NODE_PORT"; then
        echo "running node=$i pid=$pid addr=$ADDR state=$STATE"
      else
        echo "starting node=$i pid=$pid addr=$ADDR state=$STATE"
      fi
    else
      echo "stopped node=$i addr=$ADDR state=$STATE"
    fi
  done
  if (( up == NODES )); then return 0; fi
  if (( up == 0 )); then return 3; fi
  return 1
}

logs_cmd() {
  local i
  for i in $(all_nodes); do
    select_node "$i"
    echo "$LOG_FILE"
  done
}

clean_state() {
  stop_cmd
  case "$ROOT" in
    / | "${HOME:-/}" | /tmp | /root | "") die "refusing to delete state dir '$ROOT'" ;;
  esac
  log "deleting $ROOT"
  # Keep the lock file we hold; remove everything else.
  find "$ROOT" -mindepth 1 -maxdepth 1 ! -name .lock -exec rm -rf {} +
  rm -f "$LOCK_FILE"
  rmdir "$ROOT" 2>/dev/null || true
}

main() {
  local cmd="${1:-}"
  validate_settings
  select_node 1
  case "$cmd" in
    start)   take_lock; start_cmd ;;
    stop)    take_lock; stop_cmd ;;
    restart) take_lock; stop_cmd; start_cmd ;;
    status)  status_cmd ;;
    kill)    kill_node "${2:-}" ;;
    fetch)   check_java; mkdir -p "$KAFKA_HOME"; fetch; echo "$LIBS" ;;
    clean)   take_lock; clean_state ;;
    logs)    logs_cmd ;;
    -h | --help | help) usage ;;
    "") usage; exit 2 ;;
    *) log "unknown command '$cmd'"; usage; exit 2 ;;
  esac
}

main "$@"
