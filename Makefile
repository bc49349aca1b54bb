# roomcast — common tasks. `make test` is the whole suite (what CI runs).
.PHONY: build test test-quick bench screenshots vendor-web fmt vet

build:
	go build -o roomcast ./cmd/roomcast

test:
	bash scripts/test.sh

test-quick:
	go test -count=1 ./...

bench:
	bash scripts/bench.sh

fmt:
	gofmt -w $$(git ls-files '*.go')

vet:
	go vet ./...
