#!/usr/bin/env bash
# scripts/smsc.sh — run an independent SMPP 3.4 SMSC simulator (OpenSMPP's, from Maven
# Central org.opensmpp:opensmpp-sim) for local development, integration and fault tests.
#
# The jars come from Maven Central through `mvn` (scripts/smsc/pom.xml) and are cached;
# the simulator runs as a plain `java` process in the background. By default it runs
# through scripts/smsc/SmscSim.java (compiled here with javac against those jars), which
# wires up OpenSMPP's own simulator classes exactly as its Simulator does — binds,
# submit_sm handling, message ids ("Smsc2001", ...) and receipt text are OpenSMPP's — and
# replaces the interactive menu with a control FIFO, adding receipt rules and MO messages.
# SMS_SMSC_MAIN=stock runs the unmodified org.smpp.smscsim.Simulator instead (its menu
# is fed through the FIFO): every receipt is DELIVRD and `clients`/`mo` are unavailable.
#
# Usage: scripts/smsc.sh {start|stop|restart|kill|status|clients|mo|fetch|clean|logs}
#   start    fetch jars if needed, write the users file, start the simulator in the
#            background and wait until it listens; prints its address (127.0.0.1:PORT)
#            on stdout, nothing else. If it is already running it just prints the address.
#   stop     SIGTERM, wait up to SMS_SMSC_STOP_TIMEOUT s, then SIGKILL. Bound clients see
#            the TCP connection close (no unbind is sent). Message ids restart at
#            Smsc2001 on the next start.
#   restart  stop then start (prints the address).
#   kill     SIGKILL at once (crash simulation for fault tests).
#   status   prints "running pid=N addr=127.0.0.1:PORT ..." (exit 0) or "stopped" (exit 3).
#   clients  prints the simulator's client sessions, one a line: the system_id, with
#            "(closed)" for a session whose TCP peer is gone but that the simulator has not
#            reaped yet (it takes up to ~6 min), "-(unbound)" for a connection not bound.
#   mo FROM TO TEXT [SYSTEM_ID]
#            sends a mobile-originated deliver_sm (esm_class 0) from FROM to TO carrying
#            TEXT (one line, one SMS: GSM 7-bit with data_coding 0 up to 160 septets,
#            else UCS-2 with data_coding 8 up to 70 characters) to every open session
#            bound as SYSTEM_ID (default SMS_SMSC_SYSTEM_ID). FROM/TO: "+" and digits
#            (TON 1 NPI 1, "+" dropped) or up to 11 letters/digits (TON 5 NPI 0).
#            Prints how many sessions it went to; fails if none.
#   fetch    only resolve/download the jars (and compile the launcher); prints the libs dir.
#   clean    stop and delete the state dir (log, users file, debug files).
#   logs     print the path of the simulator log file (every PDU is logged there).
#
# Receipts: for a submit_sm whose registered_delivery & 0x03 == 1 (not 2 or 3), it sends a
# deliver_sm with esm_class 0x04 and text "id:Smsc2001 sub:1 dlvrd:1 submit date:YYMMDDhhmm
# done date:YYMMDDhhmm stat:DELIVRD err:0 text:<first 20 chars>" (no TLVs), 0-5 s after the
# submit (queue polled every 5 s), possibly before the submit_sm_resp. The stat comes from
# SMS_SMSC_RECEIPT_RULES: space-separated REGEX=STAT, REGEX matched against the whole
# destination_addr, first match wins, otherwise DELIVRD; STAT is DELIVRD EXPIRED DELETED
# UNDELIV ACCEPTD UNKNOWN REJECTD (err:0 for DELIVRD/ACCEPTD, err:1 otherwise) or NONE (no
# receipt). Default: ".*9990=UNDELIV .*9991=EXPIRED .*9992=REJECTD .*9993=NONE".
#
# Environment (all optional):
#   SMS_SMSC_VERSION      opensmpp-sim version to fetch     (default 3.0.2)
#   SMS_SMSC_HOME         cache dir: libs/, launcher/       (default ~/.cache/smsctl/opensmpp-VERSION)
#   SMS_SMSC_STATE        state dir: users file, fifo, pid, logs (default /tmp/smsctl-smsc)
#   SMS_SMSC_PORT         SMPP listen port (all interfaces)  (default 2775)
#   SMS_SMSC_SYSTEM_ID    system_id accepted by the simulator (default smsctl; at most 15 chars)
#   SMS_SMSC_PASSWORD     its password                        (default smsctl; at most 8 chars)
#   SMS_SMSC_EXTRA_USERS  more accounts, space-separated "system_id:password" pairs
#   SMS_SMSC_RECEIPT_RULES  receipt stat rules (see above); empty: always DELIVRD
#   SMS_SMSC_MAIN         launcher (default) | stock
#   SMS_SMSC_HEAP_OPTS    JVM heap flags                      (default "-Xmx128m -Xms32m")
#   SMS_SMSC_JVM_OPTS     extra JVM flags appended to the defaults
#   SMS_SMSC_START_TIMEOUT  seconds to wait for the listener (default 30)
#   SMS_SMSC_STOP_TIMEOUT   seconds to wait after SIGTERM before SIGKILL (default 10)
#   JAVA_HOME / JAVA / JAVAC  java and javac to use (Java 8+); MVN: maven (default mvn)
#
# Do not health-check the port with a bare TCP connect: the simulator keeps a connection
# that never binds as a session for ~6 minutes (and in stock mode such a session crashes
# its menu). This script reads /proc/net/tcp instead.
#
# Progress and errors go to stderr; only `start`/`restart` (address), `status`,
# `clients`, `mo`, `fetch` and `logs` write to stdout.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
POM="$SCRIPT_DIR/smsc/pom.xml"
LAUNCHER_SRC="$SCRIPT_DIR/smsc/SmscSim.java"

SMSC_VERSION="${SMS_SMSC_VERSION:-3.0.2}"
SMSC_HOME="${SMS_SMSC_HOME:-${HOME:-/tmp}/.cache/smsctl/opensmpp-$SMSC_VERSION}"
STATE="${SMS_SMSC_STATE:-/tmp/smsctl-smsc}"
[[ "$STATE" == /* ]] || STATE="$(pwd)/$STATE"
[[ "$SMSC_HOME" == /* ]] || SMSC_HOME="$(pwd)/$SMSC_HOME"
PORT="${SMS_SMSC_PORT:-2775}"
HOST=127.0.0.1
SYSTEM_ID="${SMS_SMSC_SYSTEM_ID:-smsctl}"
PASSWORD="${SMS_SMSC_PASSWORD:-smsctl}"
EXTRA_USERS="${SMS_SMSC_EXTRA_USERS:-}"
RECEIPT_RULES="${SMS_SMSC_RECEIPT_RULES-.*9990=UNDELIV .*9991=EXPIRED .*9992=REJECTD .*9993=NONE}"
MODE="${SMS_SMSC_MAIN:-launcher}"
START_TIMEOUT="${SMS_SMSC_START_TIMEOUT:-30}"
STOP_TIMEOUT="${SMS_SMSC_STOP_TIMEOUT:-10}"
HEAP_OPTS="${SMS_SMSC_HEAP_OPTS:--Xmx128m -Xms32m}"
MVN="${MVN:-mvn}"
LIBS="$SMSC_HOME/libs"
STOCK_MAIN=org.smpp.smscsim.Simulator
LAUNCHER_MAIN=SmscSim

if [[ -n "${JAVA:-}" ]]; then
  :
elif [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
  JAVA="$JAVA_HOME/bin/java"
else
  JAVA=java
fi
if [[ -z "${JAVAC:-}" ]]; then
  if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/javac" ]]; then JAVAC="$JAVA_HOME/bin/javac"; else JAVAC=javac; fi
fi

USERS_FILE="$STATE/users.txt"
FIFO="$STATE/control"
PID_FILE="$STATE/smsc.pid"
LOG_FILE="$STATE/smsc.log"
LOCK_FILE="$STATE/.lock"
ADDR="$HOST:$PORT"
CTL='[smsctl-ctl]'

log() { printf 'smsc.sh: %s\n' "$*" >&2; }
die() { printf 'smsc.sh: error: %s\n' "$*" >&2; exit 1; }

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2
}

# A users-file value: SMPP C-Octet String limits, no blanks, nothing the simulator's
# "name=value" parser or our pair syntax would split on.
check_account() {
  local id="$1" pw="$2"
  [[ "$id" =~ ^[A-Za-z0-9._@+-]{1,15}$ ]] \
    || die "system_id '$id' must be 1-15 characters from [A-Za-z0-9._@+-]"
  [[ "$pw" =~ ^[^[:space:]:=#\;]{1,8}$ ]] \
    || die "password for '$id' must be 1-8 characters without blanks or any of := # ;"
}

validate_settings() {
  [[ "$PORT" =~ ^[0-9]+$ ]] && (( PORT > 0 && PORT < 65536 )) \
    || die "SMS_SMSC_PORT must be a port number (got '$PORT')"
  [[ "$START_TIMEOUT" =~ ^[0-9]+$ ]] || die "SMS_SMSC_START_TIMEOUT must be a whole number of seconds"
  [[ "$STOP_TIMEOUT" =~ ^[0-9]+$ ]] || die "SMS_SMSC_STOP_TIMEOUT must be a whole number of seconds"
  [[ "$MODE" == launcher || "$MODE" == stock ]] || die "SMS_SMSC_MAIN must be launcher or stock (got '$MODE')"
  check_account "$SYSTEM_ID" "$PASSWORD"
  local pair pairs rule rules
  read -r -a pairs <<<"$EXTRA_USERS"
  for pair in "${pairs[@]}"; do
    [[ "$pair" == *:* ]] || die "SMS_SMSC_EXTRA_USERS entries must be system_id:password (got '$pair')"
    check_account "${pair%%:*}" "${pair#*:}"
  done
  read -r -a rules <<<"$RECEIPT_RULES"
  for rule in "${rules[@]}"; do
    [[ "$rule" =~ ^.+=(DELIVRD|EXPIRED|DELETED|UNDELIV|ACCEPTD|UNKNOWN|REJECTD|NONE)$ ]] \
      || die "SMS_SMSC_RECEIPT_RULES entries must be REGEX=STAT with a known STAT (got '$rule')"
  done
}

# Serialize concurrent start/stop invocations on the same state dir.
take_lock() {
  mkdir -p "$STATE"
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$LOCK_FILE"
    flock -w 120 9 || die "another smsc.sh holds $LOCK_FILE for over 120s"
  fi
}

check_java() {
  command -v "$JAVA" >/dev/null 2>&1 || die "java not found (set JAVA_HOME or JAVA)"
  if [[ "$MODE" == launcher ]]; then
    command -v "$JAVAC" >/dev/null 2>&1 \
      || die "javac not found (install a JDK, set JAVAC, or use SMS_SMSC_MAIN=stock)"
  fi
}

# ---------------------------------------------------------------- fetch

libs_ready() { [[ -f "$LIBS/.complete" ]] && [[ "$(cat "$LIBS/.complete")" == "$SMSC_VERSION" ]]; }

fetch() {
  if libs_ready; then
    return 0
  fi
  [[ -f "$POM" ]] || die "missing $POM"
  command -v "$MVN" >/dev/null 2>&1 || die "'$MVN' not found: Maven is needed to fetch the simulator jars"
  mkdir -p "$SMSC_HOME"
  # Several state dirs may share one cache: only one of them downloads.
  if command -v flock >/dev/null 2>&1; then
    exec 8>"$SMSC_HOME/.fetch.lock"
    flock -w 600 8 || die "another smsc.sh has been fetching into $SMSC_HOME for over 600s"
    if libs_ready; then exec 8>&-; return 0; fi
    rm -rf "$SMSC_HOME"/libs.tmp.* # left by an interrupted fetch
  fi
  local tmp
  tmp="$(mktemp -d "$SMSC_HOME/libs.tmp.XXXXXX")"
  log "fetching org.opensmpp:opensmpp-sim:$SMSC_VERSION from Maven Central into $LIBS ..."
  local t0=$SECONDS mvnlog="$SMSC_HOME/mvn-fetch.log"
  if ! "$MVN" -B -q -f "$POM" \
        -Dopensmpp.version="$SMSC_VERSION" \
        -DoutputDirectory="$tmp" \
        -DincludeScope=runtime \
        -Dmdep.overWriteReleases=false \
        dependency:copy-dependencies >"$mvnlog" 2>&1; then
    rm -rf "$tmp"
    tail -n 30 "$mvnlog" >&2 || true
    die "mvn failed to resolve org.opensmpp:opensmpp-sim:$SMSC_VERSION (full output: $mvnlog)"
  fi
  [[ -f "$tmp/opensmpp-sim-$SMSC_VERSION.jar" ]] \
    || { rm -rf "$tmp"; die "mvn succeeded but opensmpp-sim-$SMSC_VERSION.jar is missing"; }
  echo "$SMSC_VERSION" >"$tmp/.complete"
  rm -rf "$LIBS"
  mv "$tmp" "$LIBS"
  log "fetched $(ls "$LIBS"/*.jar | wc -l) jars ($(du -sh "$LIBS" | cut -f1)) in $((SECONDS - t0))s"
  exec 8>&-
}

# Compiles scripts/smsc/SmscSim.java once per source version into the cache and sets
# LAUNCHER_DIR to the directory holding its classes.
build_launcher() {
  [[ -f "$LAUNCHER_SRC" ]] || die "missing $LAUNCHER_SRC"
  local sum
  sum="$(sha256sum "$LAUNCHER_SRC" | cut -c1-16)"
  LAUNCHER_DIR="$SMSC_HOME/launcher/$sum"
  [[ -f "$LAUNCHER_DIR/$LAUNCHER_MAIN.class" ]] && return 0
  mkdir -p "$SMSC_HOME/launcher"
  local tmp
  tmp="$(mktemp -d "$SMSC_HOME/launcher/tmp.XXXXXX")"
  if ! "$JAVAC" -nowarn -d "$tmp" -cp "$LIBS/*" "$LAUNCHER_SRC" >"$tmp.log" 2>&1; then
    cat "$tmp.log" >&2
    rm -rf "$tmp" "$tmp.log"
    die "javac failed to compile $LAUNCHER_SRC"
  fi
  rm -f "$tmp.log"
  # A concurrent start may have compiled the same source meanwhile: either copy will do.
  mv -T "$tmp" "$LAUNCHER_DIR" 2>/dev/null || rm -rf "$tmp"
  [[ -f "$LAUNCHER_DIR/$LAUNCHER_MAIN.class" ]] || die "compiled launcher missing in $LAUNCHER_DIR"
}

# ---------------------------------------------------------------- process helpers

# Prints the simulator pid if the pid file points at our live simulator process.
running_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid
  pid="$(cat "$PID_FILE" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  # Guard against pid reuse: the process must be a simulator using our users file.
  local cmd
  cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
  [[ "$cmd" == *"-DusersFileName=$USERS_FILE "* ]] || return 1
  [[ "$cmd" == *" $LAUNCHER_MAIN "* || "$cmd" == *" $STOCK_MAIN"* ]] || return 1
  echo "$pid"
}

# The mode of the running simulator (it may differ from SMS_SMSC_MAIN of this call).
running_mode() { cat "$STATE/run.mode" 2>/dev/null || echo "$MODE"; }
run_offset() { cat "$STATE/run.offset" 2>/dev/null || echo 0; }

# True if some socket listens on PORT. Reads /proc/net/tcp{,6} rather than connecting:
# a connection that never binds would linger in the simulator as a session (see header).
port_listening() {
  local hex
  hex="$(printf ':%04X' "$PORT")"
  awk -v p="$hex" '$4 == "0A" && substr($2, length($2) - 4) == p { found = 1 } END { exit !found }' \
    /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

write_users() {
  local pair pairs
  read -r -a pairs <<<"$EXTRA_USERS"
  {
    echo "# Generated by scripts/smsc.sh on every start; set SMS_SMSC_* instead."
    echo "# Records are separated by blank lines; attributes are name=value."
    echo "name=$SYSTEM_ID"
    echo "password=$PASSWORD"
    for pair in "${pairs[@]}"; do
      echo
      echo "name=${pair%%:*}"
      echo "password=${pair#*:}"
    done
  } >"$USERS_FILE"
  chmod 600 "$USERS_FILE"
}

make_fifo() {
  if [[ ! -p "$FIFO" ]]; then
    rm -f "$FIFO"
    mkfifo -m 600 "$FIFO"
  fi
}

# Writes one line to the simulator's stdin. The JVM holds the FIFO open read-write, so
# this does not block while it runs; the timeout covers a simulator that died meanwhile.
# Lines stay below PIPE_BUF, so concurrent writers do not interleave.
ctl_send() {
  # shellcheck disable=SC2016 # $1/$2 are the inner shell's arguments
  timeout 5 bash -c 'printf "%s\n" "$1" >"$2"' _ "$1" "$FIFO" \
    || die "could not write to the simulator's control FIFO $FIFO (is it running?)"
}

# Simulator output written since byte offset $1.
log_since() { tail -c +"$(($1 + 1))" "$LOG_FILE" 2>/dev/null || true; }

# The control loop (launcher) or menu (stock) runs in the JVM's main thread; if it dies
# the SMSC keeps serving but can no longer be driven.
control_dead() { log_since "$1" | grep -q 'Exception in thread "main"'; }

java_opts() {
  # shellcheck disable=SC2206
  local heap=($HEAP_OPTS)
  JAVA_OPTS=(
    "${heap[@]}"
    -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:+ExitOnOutOfMemoryError
    -Djava.awt.headless=true
    -Dsmsctl.receiptRules="$RECEIPT_RULES"
  )
  if [[ -n "${SMS_SMSC_JVM_OPTS:-}" ]]; then
    # shellcheck disable=SC2206
    JAVA_OPTS+=(${SMS_SMSC_JVM_OPTS})
  fi
  # Last before the class: running_pid() looks for "-DusersFileName=FILE ".
  JAVA_OPTS+=(-DusersFileName="$USERS_FILE")
  if [[ "$MODE" == launcher ]]; then
    JAVA_OPTS+=(-cp "$LAUNCHER_DIR:$LIBS/*" "$LAUNCHER_MAIN" "$PORT")
  else
    JAVA_OPTS+=(-cp "$LIBS/*" "$STOCK_MAIN")
  fi
}

# Ready = our process alive, the listener reported success in this run's log, and the
# port is in LISTEN state.
wait_ready() {
  local pid="$1" offset="${2:-0}" mode="${3:-$MODE}" deadline=$((SECONDS + START_TIMEOUT)) ready
  if [[ "$mode" == launcher ]]; then ready="$CTL - ready port="; else ready='Starting listener... started.'; fi
  while (( SECONDS < deadline )); do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "simulator exited during startup; last lines of $LOG_FILE:"
      log_since "$offset" | tail -n 40 >&2
      rm -f "$PID_FILE"
      die "SMSC simulator failed to start"
    fi
    if control_dead "$offset"; then
      log "simulator failed to open its listener; last lines of $LOG_FILE:"
      log_since "$offset" | tail -n 40 >&2
      stop_smsc >/dev/null 2>&1 || true
      die "SMSC simulator failed to start on port $PORT"
    fi
    if log_since "$offset" | grep -qF "$ready" && port_listening; then
      return 0
    fi
    sleep 0.2
  done
  log "simulator not ready after ${START_TIMEOUT}s; last lines of $LOG_FILE:"
  log_since "$offset" | tail -n 40 >&2
  stop_smsc >/dev/null 2>&1 || true
  die "timed out waiting for the SMSC simulator on $ADDR"
}

# ---------------------------------------------------------------- commands

start_smsc() {
  local pid
  if pid="$(running_pid)"; then
    # Already running (maybe a concurrent start still coming up): wait for it.
    wait_ready "$pid" "$(run_offset)" "$(running_mode)"
    echo "$ADDR"
    return 0
  fi
  rm -f "$PID_FILE"
  check_java
  fetch
  [[ "$MODE" == launcher ]] && build_launcher
  if port_listening; then
    die "port $PORT is already in use by another process (set SMS_SMSC_PORT)"
  fi
  write_users
  make_fifo
  java_opts
  local t0=$SECONDS
  log "starting OpenSMPP simulator $SMSC_VERSION ($MODE) on $ADDR (state $STATE, log $LOG_FILE)"
  echo "===== $(date -u +%Y-%m-%dT%H:%M:%SZ) smsc.sh start ($MODE) =====" >>"$LOG_FILE"
  # Readiness and control replies only look at this run's part of the log.
  local offset
  offset="$(stat -c %s "$LOG_FILE")"
  echo "$offset" >"$STATE/run.offset"
  echo "$MODE" >"$STATE/run.mode"
  # cd: the simulator writes its debug/event files (sim.dbg0-2, sim.evt0-2, rotating at
  # 1 MB) into its working directory.
  # <>FIFO: stdin opened read-write, so the JVM itself keeps a writer and never reads
  # EOF (on EOF the stock menu loop would spin). setsid: own session, so it outlives the
  # calling shell/test; not a group leader here, so setsid execs in place and $! is
  # java's pid. 8>&- 9>&-: the simulator must not inherit (and hold) the lock fds.
  local detach=()
  command -v setsid >/dev/null 2>&1 && detach=(setsid)
  (cd "$STATE" && exec "${detach[@]}" "$JAVA" "${JAVA_OPTS[@]}") \
    <>"$FIFO" >>"$LOG_FILE" 2>&1 8>&- 9>&- &
  pid=$!
  echo "$pid" >"$PID_FILE"
  if [[ "$MODE" == stock ]]; then
    # Menu: "1" start simulation, then the port number at its prompt.
    ctl_send 1
    ctl_send "$PORT"
  fi
  wait_ready "$pid" "$offset" "$MODE"
  log "SMSC simulator ready on $ADDR (pid $pid, system_id $SYSTEM_ID) after $((SECONDS - t0))s"
  echo "$ADDR"
}

stop_smsc() {
  local sig="${1:-TERM}" pid
  if ! pid="$(running_pid)"; then
    rm -f "$PID_FILE"
    log "SMSC simulator is not running"
    return 0
  fi
  if [[ "$sig" == KILL ]]; then
    log "killing SMSC simulator (pid $pid) with SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    rm -f "$PID_FILE"
    return 0
  fi
  log "stopping SMSC simulator (pid $pid) ..."
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + STOP_TIMEOUT)) t0=$SECONDS
  while kill -0 "$pid" 2>/dev/null && (( SECONDS < deadline )); do
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "simulator did not exit within ${STOP_TIMEOUT}s after SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  else
    log "SMSC simulator stopped in $((SECONDS - t0))s"
  fi
  rm -f "$PID_FILE"
}

status_smsc() {
  local pid control=ok
  if pid="$(running_pid)"; then
    control_dead "$(run_offset)" && control=dead
    if port_listening; then
      echo "running pid=$pid addr=$ADDR system_id=$SYSTEM_ID mode=$(running_mode) control=$control state=$STATE"
    else
      echo "starting pid=$pid addr=$ADDR system_id=$SYSTEM_ID mode=$(running_mode) control=$control state=$STATE"
    fi
    return 0
  fi
  echo "stopped state=$STATE"
  return 3
}

# Sends a control command (fields joined by TABs, the request id inserted second) and
# prints the text after "ok " of the launcher's reply; dies on "error".
control() {
  running_pid >/dev/null || die "SMSC simulator is not running (scripts/smsc.sh start)"
  [[ "$(running_mode)" == launcher ]] \
    || die "'$1' needs the launcher; the simulator runs in stock mode (SMS_SMSC_MAIN=stock)"
  control_dead "$(run_offset)" && die "the simulator's control loop has died (see $LOG_FILE); restart it"
  local cmd="$1" id="$$.$RANDOM" line offset deadline=$((SECONDS + 10)) reply
  shift
  line="$cmd"$'\t'"$id"
  local field
  for field in "$@"; do line+=$'\t'"$field"; done
  offset="$(stat -c %s "$LOG_FILE")"
  ctl_send "$line"
  while :; do
    reply="$(log_since "$offset" | grep -F -m1 "$CTL $id " || true)"
    [[ -n "$reply" ]] && break
    (( SECONDS < deadline )) || die "no answer from the simulator to '$cmd' (see $LOG_FILE)"
    sleep 0.05
  done
  reply="${reply#*"$CTL $id "}"
  case "$reply" in
    ok*) echo "${reply#ok }" ;;
    *) die "simulator: ${reply#error }" ;;
  esac
}

clients_cmd() {
  local out
  out="$(control clients)"
  out="${out#clients=}"
  [[ -z "$out" ]] || tr ',' '\n' <<<"$out"
}

mo_cmd() {
  (( $# >= 3 && $# <= 4 )) || die "usage: scripts/smsc.sh mo FROM TO TEXT [SYSTEM_ID]"
  local from="$1" to="$2" text="$3" target="${4:-$SYSTEM_ID}" addr
  for addr in "$from" "$to"; do
    [[ "$addr" =~ ^\+?[0-9]{1,20}$ || "$addr" =~ ^[A-Za-z0-9]{1,11}$ ]] \
      || die "MO address '$addr' must be [+]digits (up to 20) or up to 11 letters/digits"
  done
  [[ -n "$text" ]] || die "mo TEXT must not be empty"
  [[ "$text" != *[$'\n\r\t']* ]] || die "mo TEXT must be one line without tabs"
  local out sent
  out="$(control mo "$target" "$from" "$to" "$text")"
  sent="${out#sent=}"
  [[ "$sent" =~ ^[0-9]+$ ]] || die "unexpected answer from the simulator: $out"
  (( sent > 0 )) || die "no open session is bound as '$target' (scripts/smsc.sh clients)"
  log "deliver_sm from $from to $to sent to $sent session(s) bound as '$target'"
  echo "$sent"
}

clean_state() {
  stop_smsc
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
    start)   take_lock; start_smsc ;;
    stop)    take_lock; stop_smsc ;;
    restart) take_lock; stop_smsc; start_smsc ;;
    kill)    take_lock; stop_smsc KILL ;;
    status)  status_smsc ;;
    clients) clients_cmd ;;
    mo)      shift; mo_cmd "$@" ;;
    fetch)   check_java; mkdir -p "$SMSC_HOME"; fetch; [[ "$MODE" == launcher ]] && build_launcher; echo "$LIBS" ;;
    clean)   take_lock; clean_state ;;
    logs)    echo "$LOG_FILE" ;;
    -h | --help | help) usage ;;
    "") usage; exit 2 ;;
    *) log "unknown command '$cmd'"; usage; exit 2 ;;
  esac
}

main "$@"
