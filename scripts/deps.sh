#!/usr/bin/env bash
# Installs what the test suite needs on a fresh go-svc machine (Debian):
# ffmpeg/ffprobe for the media tests, Chromium and chromedriver for the
# browser tests. Idempotent; fails loudly when something cannot be installed,
# because tests must fail, never skip, when a dependency is missing.
set -euo pipefail
need=()
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
command -v ffprobe >/dev/null 2>&1 || need+=(ffmpeg)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
if [ ${#need[@]} -gt 0 ]; then
  echo "deps: installing ${need[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
for c in ffmpeg ffprobe chromium chromedriver; do
  command -v "$c" >/dev/null 2>&1 || { echo "deps: $c is still missing" >&2; exit 1; }
done
# Local services the cluster tests use (started by the machine; restarted here if stopped).
if command -v redis-cli >/dev/null 2>&1 && ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
fi
echo "deps: ok" >&2
