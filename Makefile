# skyline: `make demo` runs a local skyline, `make test` runs every check.
# Both install what they need (rpm/rpmbuild) through the system package
# manager when it is missing, and say so.

GO        ?= go
BIN       ?= bin
FUZZTIME  ?= 30s
BENCHTIME ?= 1s
PKGS      := ./...

.PHONY: all build test demo lint vet fmt-check staticcheck unit bench bench-ratios fuzz deps deps-rpm clean rpm

all: build

build:
	$(GO) build -o $(BIN)/skyline ./cmd/skyline

# deps-rpm installs what the demo and `make rpm` run for real; deps adds
# what the tests also start (RabbitMQ for the Koji listener, Chromium for
# the stats pages' browser test).
deps-rpm:
	@./scripts/need rpmbuild rpm

deps: deps-rpm
	@./scripts/need rabbitmq-server rabbitmq-server
	@./scripts/need chromium chromium

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

staticcheck:
	$(GO) tool staticcheck $(PKGS)

lint: fmt-check vet staticcheck

# -count=1: every run really runs the tests (they build RPMs and start
# servers; a cached "ok" would prove nothing about this machine).
unit: deps
	$(GO) test -race -count=1 -timeout 14m $(PKGS)

test: lint unit

demo: deps-rpm
	@GO=$(GO) BIN=$(BIN) ./scripts/demo

bench: deps
	$(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) $(PKGS)

# bench-ratios prints the RPM digest, envelope verify and serve figures as
# ratios to the shared/bench/limits yardsticks measured in the same rounds
# (ROUNDS, default 5); the log's figures come from shared/bench/side-by-side.sh.
bench-ratios: deps-rpm
	@./scripts/bench-ratios $(ROUNDS)

# fuzz runs every Fuzz target for FUZZTIME each.
fuzz:
	@./scripts/fuzz $(FUZZTIME)

# rpm builds bin/rpm/RPMS/<arch>/skyline-*.rpm (the binary and the systemd
# units) with rpmbuild; it packs the binary built by `build`, so it works
# offline and needs no Go toolchain inside rpmbuild.
rpm: deps-rpm build
	./packaging/rpm.sh $(BIN)

clean:
	rm -rf $(BIN)
