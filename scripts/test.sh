#!/usr/bin/env bash
# Runs every test the way CI does: go vet, the race detector over the whole
# suite on an in-process Kafka (kfake), the Kafka-facing suites again on a
# real Apache Kafka broker, the contract tester (schemathesis) against a
# running API, the Go benchmarks at a short benchtime (so they keep
# compiling and running), gosec, and the compose/Dockerfile syntax check.
# PostgreSQL, Kafka and Chromium (for the console's browser test) are
# installed and started as needed.
#
#   scripts/test.sh           # everything
#   scripts/test.sh kfake     # vet + kfake lane only
#   scripts/test.sh kafka     # real-Kafka lane only
set -euo pipefail
cd "$(dirname "$0")/.."
lane="${1:-all}"

step() { printf '\n==> %s\n' "$*"; }

export SMS_TEST_DATABASE_URL
SMS_TEST_DATABASE_URL="$(scripts/postgres.sh --test)"
step "PostgreSQL: $SMS_TEST_DATABASE_URL"
# Databases left by runs that were killed before their cleanup.
psql "$SMS_TEST_DATABASE_URL" -Atqc "select datname from pg_database where datname like 'smsctl_t_%' or datname like 'smsctl_tmpl_%'" |
  while read -r name; do psql "$SMS_TEST_DATABASE_URL" -qc "drop database if exists $name with (force)" >/dev/null 2>&1 || true; done

step "Chromium for the console's browser tests"
export SMS_CHROMIUM
SMS_CHROMIUM="$(scripts/chromium.sh)"

if [ "$lane" = all ] || [ "$lane" = kfake ]; then
  step "go vet"
  go vet ./...
  step "go test -race (kfake lane)"
  env -u SMS_TEST_KAFKA_BROKERS go test -race -count=1 -timeout 20m ./...
fi

if [ "$lane" = all ] || [ "$lane" = kafka ]; then
  step "real Apache Kafka broker"
  export SMS_KAFKA_START_TIMEOUT="${SMS_KAFKA_START_TIMEOUT:-180}"
  brokers="$(scripts/kafka.sh start)"
  trap 'scripts/kafka.sh stop >/dev/null 2>&1 || true' EXIT
  step "go test -race (real Kafka lane, brokers $brokers)"
  SMS_TEST_KAFKA_BROKERS="$brokers" SMS_KAFKA_SCRIPT="$PWD/scripts/kafka.sh" \
    go test -race -count=1 -timeout 30m ./platform/... ./sms/... ./processor/... ./e2e/...
  step "contract test of the OpenAPI document (schemathesis, brokers $brokers)"
  SMS_TEST_KAFKA_BROKERS="$brokers" scripts/schemathesis.sh
fi

if [ "$lane" = all ]; then
  step "Go benchmarks (short, to keep them running)"
  go test -run '^$' -bench . -benchtime 100x ./... >/dev/null
  step "gosec (static security check)"
  scripts/gosec.sh
  step "compose.yaml and Dockerfile"
  scripts/check-compose.sh
fi
step "all tests passed"
