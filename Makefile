# sealfs — see README.md. `make demo` and `make test` do their own set-up.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
FUZZTIME ?= 30s

.PHONY: all build deps test vet fmt-check fuzz bench demo clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/sealfs ./cmd/sealfs

deps:
	@bash scripts/deps.sh

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# The whole suite: vectors from docs/format.md, tamper cases, fuzz seeds,
# server and end-to-end tests against real HTTPS, SQLite and FUSE.
test: deps fmt-check vet build
	$(GO) test -race -count=1 -timeout 18m ./...

# Fuzz every target for FUZZTIME each (seeds alone run in `make test`).
fuzz:
	@bash scripts/fuzz.sh $(FUZZTIME)

bench: deps build
	@bash scripts/bench.sh

demo: deps build
	@bash scripts/demo.sh

clean:
	rm -rf bin
