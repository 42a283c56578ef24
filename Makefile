# smsctl: the two commands a newcomer needs are `make dev` and `make test`.
SHELL := /bin/bash
GO    ?= go
BIN   := bin/smsctl
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: build dev test test-kfake test-kafka vet compose-check bench fuzz kafka-up kafka-down clean

build: ## build bin/smsctl
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o $(BIN) .

dev: build ## run the whole platform on this machine (PostgreSQL is installed/started if needed)
	SMS_DATABASE_URL="$$(scripts/postgres.sh)" $(BIN) dev

test: ## run every test: vet, race tests on kfake, race tests on a real Kafka broker, compose check
	scripts/test.sh

test-kfake: ## only the in-process Kafka lane
	scripts/test.sh kfake

test-kafka: ## only the real Apache Kafka lane
	scripts/test.sh kafka

bench: build ## the performance benchmark (real PostgreSQL and Kafka)
	bench/run.sh

fuzz: ## fuzz request decoding and validation for FUZZTIME (default 2m)
	$(GO) test ./sms/http -run '^$$' -fuzz FuzzDecodeAndValidate -fuzztime $${FUZZTIME:-2m}

kafka-up: ## start the real Kafka broker used by tests (prints its address)
	scripts/kafka.sh start

kafka-down:
	scripts/kafka.sh stop

compose-check: ## validate compose.yaml and the Dockerfile without a Docker engine
	scripts/check-compose.sh

clean:
	rm -rf bin tmp
