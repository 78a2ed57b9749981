# dualledger: the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
GO ?= go
BIN := bin/dualledger
STATICCHECK_VERSION := v0.8.2
export GOFLAGS := -buildvcs=false

.PHONY: all build demo test test-short lint vet staticcheck fuzz bench postgres clean sums

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

## fuzz: run each fuzz target for FUZZTIME (seed corpora already run in `make test`). go test
## fuzzes one target per run. Minimizing each new input is capped (default 60s), or it eats the time.
FUZZTIME ?= 30s
FUZZFLAGS ?= -fuzzminimizetime 5s
fuzz:
	$(GO) test ./internal/money -run '^$$' -fuzz '^FuzzParseAmount$$' -fuzztime $(FUZZTIME) $(FUZZFLAGS)
	$(GO) test ./internal/httpapi -run '^$$' -fuzz '^FuzzDecodeEntry$$' -fuzztime $(FUZZTIME) $(FUZZFLAGS)
	$(GO) test ./internal/httpapi -run '^$$' -fuzz '^FuzzDecodeBatch$$' -fuzztime $(FUZZTIME) $(FUZZFLAGS)
	$(GO) test ./internal/httpapi -run '^$$' -fuzz '^FuzzDecodeJSONBodies$$' -fuzztime $(FUZZTIME) $(FUZZFLAGS)
	$(GO) test ./internal/httpapi -run '^$$' -fuzz '^FuzzPlainObjectAgreesWithScanJSON$$' -fuzztime $(FUZZTIME) $(FUZZFLAGS)
	$(GO) test ./internal/scb -run '^$$' -fuzz '^FuzzParseRetryAfter$$' -fuzztime $(FUZZTIME) $(FUZZFLAGS)
	$(GO) test ./internal/scb -run '^$$' -fuzz '^FuzzEntryBody$$' -fuzztime $(FUZZTIME) $(FUZZFLAGS)
	$(GO) test ./internal/scb -run '^$$' -fuzz '^FuzzLoadConfigFile$$' -fuzztime $(FUZZTIME) $(FUZZFLAGS)
	$(GO) test ./internal/scb/sim -run '^$$' -fuzz '^FuzzLogReplay$$' -fuzztime $(FUZZTIME) $(FUZZFLAGS)
	$(GO) test ./internal/scb/sim -run '^$$' -fuzz '^FuzzPostBody$$' -fuzztime $(FUZZTIME) $(FUZZFLAGS)
	$(GO) test ./internal/backfill/transform -run '^$$' -fuzz '^FuzzTransform$$' -fuzztime $(FUZZTIME) $(FUZZFLAGS)
	$(GO) test ./internal/backfill/transform -run '^$$' -fuzz '^FuzzParseMapping$$' -fuzztime $(FUZZTIME) $(FUZZFLAGS)
	$(GO) test ./internal/backfill/source -run '^$$' -fuzz '^FuzzCSV$$' -fuzztime $(FUZZTIME) $(FUZZFLAGS)
	$(GO) test ./internal/backfill/source -run '^$$' -fuzz '^FuzzAPIPage$$' -fuzztime $(FUZZTIME) $(FUZZFLAGS)

## bench: the posting benchmark (docs/benchmarks.md).
bench: postgres build
	./$(BIN) bench

## sums: append the sha256 line of each new db/migrations file to db/migrations.sum (existing
## lines never change: `make test` fails when an applied migration is edited).
sums:
	$(GO) test ./db -count=1 -run '^TestMigrationSums$$' -update

## postgres: make sure PostgreSQL server binaries exist (installs Debian's package if not).
postgres:
	@scripts/ensure-postgres.sh

clean:
	rm -rf bin
