#!/usr/bin/env bash
# Vendors the browser players the web pages use, with their licences, into
# web/static/vendor/. The output is committed, so building or running roomcast
# never needs npm or the network; run this only to change a player version.
#
#   bash scripts/vendor-web.sh            # or: make vendor-web
#
# It downloads the exact npm packages below with `npm pack` into a temporary
# directory (no node_modules, no package.json in the repository), checks the
# tarball integrity npm reports against the pinned one, and copies each
# package's minified browser build and LICENSE.
set -euo pipefail
cd "$(dirname "$0")/.."

MPEGTS_VERSION=1.8.2
MPEGTS_INTEGRITY=sha512-cZYMa5muASH55wrS6JK5IGkUqnCA96c0f+WdnW91jIK9s/N6NzjmTQDJNYg9A5u/G2Q5nj2b3w1Zwzze/9guxA==
HLS_VERSION=1.7.4
HLS_INTEGRITY=sha512-3GlxGdPvT2YHvQYOt+yOzT/DEior/qJVNIylHA77kgeoBTdQQqi70GwefNEUmHQeNGyjC8U62+bruqW/Tpm+tg==
OUT=web/static/vendor

command -v npm >/dev/null 2>&1 || { echo "vendor-web: npm is required (Node 18+)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fetch() { # name version integrity → extracted package dir
  local name=$1 version=$2 want=$3
  local integrity
  integrity=$(cd "$tmp" && npm pack --json "${name}@${version}" 2>/dev/null |
    node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s)[0].integrity))')
  [ "$integrity" = "$want" ] || { echo "vendor-web: $name@$version: integrity $integrity, want $want" >&2; exit 1; }
  local tgz="$tmp/${name}-${version}.tgz"
  mkdir -p "$tmp/$name"
  tar -xzf "$tgz" -C "$tmp/$name"
  # Refuse anything but the version we asked for.
  local got
  got=$(node -p "require('$tmp/$name/package/package.json').version")
  [ "$got" = "$version" ] || { echo "vendor-web: $name: got $got, want $version" >&2; exit 1; }
  echo "$tmp/$name/package"
}

mkdir -p "$OUT"
m=$(fetch mpegts.js "$MPEGTS_VERSION" "$MPEGTS_INTEGRITY")
cp "$m/dist/mpegts.js" "$OUT/mpegts.min.js"
cp "$m/LICENSE" "$OUT/mpegts.LICENSE"

h=$(fetch hls.js "$HLS_VERSION" "$HLS_INTEGRITY")
cp "$h/dist/hls.min.js" "$OUT/hls.min.js"
cp "$h/LICENSE" "$OUT/hls.LICENSE"

# Drop source-map references: the maps are not vendored, and a missing map is
# a 404 in the browser's developer tools.
sed -i -e 's|//# sourceMappingURL=.*$||' "$OUT/mpegts.min.js" "$OUT/hls.min.js"

cat > "$OUT/VERSIONS" <<V
mpegts.js ${MPEGTS_VERSION} (npm: dist/mpegts.js, Apache-2.0, see mpegts.LICENSE)
hls.js ${HLS_VERSION} (npm: dist/hls.min.js, Apache-2.0, see hls.LICENSE)
vendored by scripts/vendor-web.sh
V
( cd "$OUT" && sha256sum mpegts.min.js hls.min.js > SHA256SUMS )
echo "vendor-web: wrote $OUT:" >&2
ls -l "$OUT" >&2
