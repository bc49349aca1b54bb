# roomcast — common tasks. `make test` is the whole suite (what CI runs).
.PHONY: build test test-quick bench screenshots vendor-web fmt vet proto

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

# Screenshots of every page at desktop and phone width into docs/screenshots/
# (the browser tests' TestScreenshots; needs Chromium and ffmpeg, see
# scripts/deps.sh). Emoji and CJK text need fonts-noto-color-emoji and
# fonts-noto-cjk.
screenshots:
	@fc-list 2>/dev/null | grep -qi "Noto Color Emoji" || echo "screenshots: fonts-noto-color-emoji is missing; emoji will show as boxes" >&2
	ROOMCAST_SCREENSHOTS=$(CURDIR)/docs/screenshots go test ./web -run '^TestScreenshots$$' -count=1 -v

# Re-vendor the browser players (mpegts.js, hls.js) into web/static/vendor/.
vendor-web:
	bash scripts/vendor-web.sh

# Regenerate the Go code of the wire schema (proto/roomcast/v1/*.proto) with
# protoc (Debian's protobuf-compiler, see scripts/deps.sh) and the pinned
# protoc-gen-go. The generated files are committed; a test fails when they
# are out of date.
proto:
	GOBIN="$(CURDIR)/.bin" go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
	PATH="$(CURDIR)/.bin:$$PATH" protoc --go_out=. --go_opt=module=roomcast proto/roomcast/v1/*.proto
