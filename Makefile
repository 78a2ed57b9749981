# dualledger: the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
GO ?= go
BIN := bin/dualledger
STATICCHECK_VERSION := v0.8.2
export GOFLAGS := -buildvcs=false

.PHONY: all build demo test test-short lint vet staticcheck fuzz bench postgres clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/dualledger

## demo: run the demo on the embedded PostgreSQL (./.dualledger/pg).
demo: postgres build
	./$(BIN) demo

## test: vet, staticcheck, and every test (race detector, fuzz seed corpora) against a real PostgreSQL.
test: postgres lint
	$(GO) test -race -count=1 -timeout 30m ./...

test-short: postgres
	$(GO) test -short -count=1 ./...

lint: vet staticcheck
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi

vet:
	$(GO) vet ./...

staticcheck:
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

## fuzz: run each fuzz target for FUZZTIME (seed corpora already run in `make test`).
FUZZTIME ?= 30s
fuzz:
	$(GO) test ./internal/money -run '^$$' -fuzz FuzzParseAmount -fuzztime $(FUZZTIME)
	$(GO) test ./internal/httpapi -run '^$$' -fuzz FuzzDecodeEntry -fuzztime $(FUZZTIME)

## bench: the posting benchmark (docs/benchmarks.md).
bench: postgres build
	./$(BIN) bench

## postgres: make sure PostgreSQL server binaries exist (installs Debian's package if not).
postgres:
	@scripts/ensure-postgres.sh

clean:
	rm -rf bin
