#!/usr/bin/env bash
# Makes sure a PostgreSQL server is running and prints a database URL for
# smsctl on stdout. Order: SMS_TEST_DATABASE_URL / SMS_DATABASE_URL when set
# and reachable; else the local cluster (started if down); else Debian's
# postgresql package is installed and started. Creates role and databases
# smsctl (development) and smsctl_test (tests); the role may create
# databases, since every test gets its own.
#
#   scripts/postgres.sh            # prints the development URL
#   scripts/postgres.sh --test     # prints the test URL
set -euo pipefail

log() { printf 'postgres.sh: %s\n' "$*" >&2; }

db=smsctl
[ "${1:-}" = "--test" ] && db=smsctl_test

given="${SMS_TEST_DATABASE_URL:-}"
[ "$db" = smsctl ] && given="${SMS_DATABASE_URL:-}"
if [ -n "$given" ]; then
  if command -v psql >/dev/null && psql "$given" -Atqc 'select 1' >/dev/null 2>&1; then
    echo "$given"
    exit 0
  fi
  log "the given database URL does not answer; falling back to a local server"
fi

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi
}

if ! command -v pg_ctlcluster >/dev/null || [ -z "$(ls /usr/lib/postgresql 2>/dev/null)" ]; then
  log "installing PostgreSQL from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
fi

version=$(ls /usr/lib/postgresql | sort -V | tail -1)
if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main"' | grep -q .; then
  log "creating cluster $version/main"
  pg_createcluster "$version" main >&2
fi
if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" && $4 == "online"' | grep -q .; then
  log "starting cluster $version/main"
  pg_ctlcluster "$version" main start >&2
fi
port=$(pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" {print $3}')

for _ in $(seq 1 50); do
  as_postgres psql -p "$port" -Atqc 'select 1' >/dev/null 2>&1 && break
  sleep 0.2
done

as_postgres psql -p "$port" -v ON_ERROR_STOP=1 -q >/dev/null <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'smsctl') THEN
    CREATE ROLE smsctl LOGIN PASSWORD 'smsctl' CREATEDB;
  END IF;
END \$\$;
SQL
for name in smsctl smsctl_test; do
  if [ -z "$(as_postgres psql -p "$port" -Atqc "select 1 from pg_database where datname = '$name'")" ]; then
    as_postgres createdb -p "$port" -O smsctl "$name"
  fi
done

echo "postgres://smsctl:smsctl@127.0.0.1:$port/$db?sslmode=disable"
