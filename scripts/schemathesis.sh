#!/usr/bin/env bash
# Contract test: runs schemathesis (from PyPI, pinned in
# scripts/schemathesis/requirements.txt, installed into a cached virtualenv)
# against a real `smsctl serve api` on a throwaway PostgreSQL database, with
# every check, positive and negative data, the examples, coverage, fuzzing
# and stateful (links) phases, two accounts that must not see each other's
# messages, webhook endpoints, inbound messages and suppressions, and the
# internal token on the internal routes. The API runs with
# SMS_WEBHOOK_ALLOW_PRIVATE=true, so that webhook endpoints on loopback are
# accepted: hooks.py points them at a receiver of its own and checks every
# webhook request it gets (signature, body). Account A owns a number
# (+14155550100), so inbound hand-overs to it are routed. Fails on any
# failure not listed in scripts/schemathesis/known-false-positives.yaml.
#
#   scripts/schemathesis.sh                  # the whole run (3 to 4 minutes)
#   scripts/schemathesis.sh --max-examples 5 # extra arguments go to `schemathesis run`
#
# Environment (all optional):
#   SMS_TEST_KAFKA_BROKERS      broker for the API; else scripts/kafka.sh starts one
#                               (and stops it at exit if it was not running)
#   SMS_TEST_DATABASE_URL       PostgreSQL to create the throwaway database on
#                               (else scripts/postgres.sh --test finds or starts one)
#   SMS_SCHEMATHESIS_BIN        smsctl binary to test (default bin/smsctl, built by
#                               `make build` when missing or older than the sources)
#   SMS_SCHEMATHESIS_VENV       virtualenv (default ~/.cache/smsctl/schemathesis-venv)
#   SMS_SCHEMATHESIS_EXAMPLES   examples per operation and phase (default 150)
#   SMS_SCHEMATHESIS_SEED       seed, to repeat a run (default: random, printed)
#   SMS_SCHEMATHESIS_REPORTS    where the JUnit/NDJSON reports and the server log
#                               go (default tmp/schemathesis)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
here=$root/scripts/schemathesis

log() { printf '==> schemathesis.sh: %s\n' "$*" >&2; }
die() { printf 'schemathesis.sh: error: %s\n' "$*" >&2; exit 1; }

command -v python3 >/dev/null || die "python3 is needed (apt-get install python3 python3-venv)"
command -v curl >/dev/null || die "curl is needed"

t0=$SECONDS
reports=${SMS_SCHEMATHESIS_REPORTS:-$root/tmp/schemathesis}
mkdir -p "$reports"
rm -f "$reports"/junit-*.xml "$reports"/ndjson-*.ndjson # the last run's are enough
work=$(mktemp -d)
server_pid='' admin_url='' db='' stop_kafka=''

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [ -n "$db" ]; then
    psql "$admin_url" -qc "drop database if exists $db with (force)" >/dev/null 2>&1 || true
  fi
  if [ -n "$stop_kafka" ]; then
    scripts/kafka.sh stop >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- schemathesis, in its own virtualenv -----------------------------------
venv=${SMS_SCHEMATHESIS_VENV:-${HOME:-/tmp}/.cache/smsctl/schemathesis-venv}
want=$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)
if [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
  log "installing schemathesis into $venv"
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv" || die "python3 -m venv failed (apt-get install python3-venv)"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt" >&2
  echo "$want" >"$venv/.requirements.sha256"
fi

# --- the binary: built when missing or older than its sources --------------
# (openapi.yaml is embedded in it, so a document edit needs a rebuild too.)
smsctl=${SMS_SCHEMATHESIS_BIN:-bin/smsctl}
if [ -z "${SMS_SCHEMATHESIS_BIN:-}" ] && { [ ! -x bin/smsctl ] || [ -n "$(find . -path ./tmp -prune -o \( -name '*.go' -o -name 'go.mod' -o -name 'go.sum' -o -name 'openapi.yaml' -o -name '*.sql' \) -newer bin/smsctl -print -quit)" ]; }; then
  log "building bin/smsctl"
  make -s build >&2 || die "make build failed"
fi
[ -x "$smsctl" ] || die "$smsctl is not an executable"

# --- a throwaway database ---------------------------------------------------
admin_url=$(scripts/postgres.sh --test)
command -v psql >/dev/null || die "psql is needed (scripts/postgres.sh installs it with PostgreSQL)"
db="smsctl_t_schemathesis_$$_$RANDOM"
psql "$admin_url" -v ON_ERROR_STOP=1 -qc "create database $db" >/dev/null
db_url=$(python3 - "$admin_url" "$db" <<'EOF'
import sys, urllib.parse as u
p = u.urlsplit(sys.argv[1])
print(u.urlunsplit(p._replace(path="/" + sys.argv[2])))
EOF
)
export SMS_DATABASE_URL=$db_url SMS_LOG_LEVEL=warn SMS_LOG_FORMAT=json
"$smsctl" migrate up >"$work/migrate.log" 2>&1 || { cat "$work/migrate.log" >&2; die "migrate up failed"; }
key_a=$("$smsctl" apikey create --account schemathesis-a 2>/dev/null | tail -n 1)
key_b=$("$smsctl" apikey create --account schemathesis-b 2>/dev/null | tail -n 1)
[[ $key_a == sms_* && $key_b == sms_* ]] || die "apikey create did not print a key"
number_a=+14155550100
"$smsctl" number add --account schemathesis-a "$number_a" >"$work/number.log" 2>&1 || { cat "$work/number.log" >&2; die "number add failed"; }

# --- Kafka ------------------------------------------------------------------
if [ -n "${SMS_TEST_KAFKA_BROKERS:-}" ]; then
  brokers=$SMS_TEST_KAFKA_BROKERS
else
  scripts/kafka.sh status >/dev/null 2>&1 || stop_kafka=1
  brokers=$(scripts/kafka.sh start)
fi

# --- the API ----------------------------------------------------------------
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base=http://127.0.0.1:$port
internal_token=$(python3 -c 'import secrets; print(secrets.token_hex(24))')
SMS_HTTP_ADDR=127.0.0.1:$port SMS_KAFKA_BROKERS=$brokers SMS_INTERNAL_TOKEN=$internal_token \
  SMS_RATE_LIMIT=1000000 SMS_RATE_BURST=1000000 SMS_AUTH_FAILURE_RATE=1000000 SMS_AUTH_FAILURE_BURST=1000000 \
  SMS_WEBHOOK_ALLOW_PRIVATE=true SMS_LOG_LEVEL=info \
  "$smsctl" serve api >"$reports/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 150); do
  curl -fsS -o /dev/null "$base/readyz" 2>/dev/null && break
  kill -0 "$server_pid" 2>/dev/null || { tail -n 30 "$reports/server.log" >&2; die "serve api exited"; }
  sleep 0.2
done
curl -fsS -o /dev/null "$base/readyz" || die "serve api not ready on $base after 30 s (log: $reports/server.log)"
log "API on $base (Kafka $brokers, database $db), ready after $((SECONDS - t0)) s"

# --- credentials: account A and account B (peers that must not see each
# other's messages) and the processor's internal token ------------------------
cat >"$work/auth.json" <<EOF
{
  "schemaVersion": "1.0",
  "auth": [
    {"name": "account-a", "fixedHeaders": [{"name": "Authorization", "value": "Bearer $key_a"}]},
    {"name": "account-b", "fixedHeaders": [{"name": "Authorization", "value": "Bearer $key_b"}]},
    {"name": "processor", "fixedHeaders": [{"name": "Authorization", "value": "Bearer $internal_token"}]}
  ]
}
EOF
export SMS_ST_AUTH_FILE=$work/auth.json SMS_ST_KEY_A=$key_a SMS_ST_KEY_B=$key_b SMS_ST_INTERNAL_TOKEN=$internal_token \
  SMS_ST_NUMBER_A=$number_a

seed=${SMS_SCHEMATHESIS_SEED:-$((RANDOM * 32768 + RANDOM))}
examples=${SMS_SCHEMATHESIS_EXAMPLES:-150}
log "schemathesis $("$venv/bin/schemathesis" --version | awk '{print $NF}'), seed $seed, $examples examples per operation"
rc=0
(
  # schemathesis keeps state (.hypothesis, .schemathesis) in the working
  # directory: a throwaway one, so that a run depends on its seed alone.
  cd "$work"
  SMS_ST_HOOKS=$here/hooks.py "$venv/bin/schemathesis" --config-file "$here/schemathesis.toml" run "$base/openapi.json" \
    --checks all --mode all --phases examples,coverage,fuzzing,stateful \
    --max-examples "$examples" --seed "$seed" --workers 2 \
    --report junit,ndjson --report-dir "$reports" \
    --no-color "$@"
) || rc=$?
log "finished in $((SECONDS - t0)) s with exit code $rc (reports and server log in $reports)"
exit "$rc"
