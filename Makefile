# Ward. `make run` starts a one-node dev system; `make test` runs everything CI runs.
GO        ?= go
RACE_PKGS := ./actors/... ./persistence/... ./cluster/...
SEED      ?= 1
# Build tags of the faster crypto backends (cgo: libcrypto for RS256,
# libsodium for argon2id); their tests run in `make test`, and
# `make run FAST=1` / `go build -tags ...` uses them.
FAST_TAGS := openssl sodium

.PHONY: run test vet race unit bench sim proto lint fmt

run:
	$(GO) run $(if $(FAST),-tags '$(FAST_TAGS)') ./cmd/ward dev

test: vet race unit

vet:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# The runtime's core packages run under the race detector; everything else
# runs once without it (the race packages are not run twice).
race:
	$(GO) test -race -count=1 -timeout 15m $(RACE_PKGS)

unit:
	$(GO) test -count=1 -timeout 20m $$($(GO) list ./... | grep -v -e /actors -e /persistence -e /cluster)
	$(GO) test -count=1 -timeout 5m -tags '$(FAST_TAGS)' ./edge/jose/ ./edge/password/

bench:
	$(GO) test -run '^$$' -bench . -benchmem -timeout 30m ./persistence/... ./cluster/... ./bench/...

sim:
	$(GO) run ./cmd/ward sim --seed $(SEED) --json

proto:
	cd protocol && protoc --go_out=. --go_opt=paths=source_relative -I. -I/usr/include *.proto

lint: vet
	$(GO) run honnef.co/go/tools/cmd/staticcheck@latest ./...

fmt:
	gofmt -w $$(git ls-files '*.go')
