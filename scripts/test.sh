#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs dependencies, vets, runs every
# test with the race detector, then each fuzz target briefly.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"
echo "== go vet" >&2
go vet ./...
echo "== go test -race" >&2
go test -race -count=1 -timeout 20m ./...
echo "== fuzz (short)" >&2
# A count, not a duration: Go 1.26's fuzz coordinator can report a spurious
# "context deadline exceeded" when a duration-based -fuzztime expires
# (golang/go#75804, fixed in Go 1.27); a count has no deadline to race.
FUZZTIME="${FUZZTIME:-150000x}"
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for fz in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    echo "fuzz $pkg $fz" >&2
    go test -run '^$' -fuzz "^${fz}\$" -fuzztime "$FUZZTIME" "$pkg"
  done
done
echo "== all tests passed" >&2
