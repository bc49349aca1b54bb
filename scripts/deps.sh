#!/usr/bin/env bash
# Installs what the test suite needs on a fresh go-svc machine (Debian):
# ffmpeg/ffprobe for the media tests, Chromium and chromedriver for the
# browser tests, protoc (protobuf-compiler) for the wire schema's generated
# code (`make proto` and its up-to-date test), nginx for the operator's
# guide's reverse-proxy snippet and systemd-analyze for the systemd unit. Idempotent; fails loudly when
# something cannot be installed, because tests must fail, never skip, when a
# dependency is missing.
set -euo pipefail

# services starts the local services the cluster tests use (Redis, PostgreSQL,
# MariaDB), which the machine starts before a session, if one has stopped,
# and waits until each answers. `deps.sh services` does only this (the
# cluster tests call it when a service is missing).
services() {
  if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    echo "deps: starting redis" >&2
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
  fi
  if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    echo "deps: starting postgresql" >&2
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  fi
  if ! mysqladmin -h 127.0.0.1 -P 3306 -uroot status >/dev/null 2>&1; then
    echo "deps: starting mariadb" >&2
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
  fi
  local i
  for i in $(seq 1 60); do
    if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null &&
      mysqladmin -h 127.0.0.1 -P 3306 -uroot status >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.5
  done
  echo "deps: redis, postgresql or mariadb did not come up" >&2
  return 1
}

if [ "${1:-}" = services ]; then
  services
  exit $?
fi

need=()
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
command -v ffprobe >/dev/null 2>&1 || need+=(ffmpeg)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)                 # the operator's guide's TLS proxy snippet (docs/)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)   # verifies deploy/roomcast.service
if [ ${#need[@]} -gt 0 ]; then
  echo "deps: installing ${need[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
for c in ffmpeg ffprobe chromium chromedriver protoc systemd-analyze; do
  command -v "$c" >/dev/null 2>&1 || { echo "deps: $c is still missing" >&2; exit 1; }
done
[ -x /usr/sbin/nginx ] || { echo "deps: nginx is still missing" >&2; exit 1; }
# Local services the cluster tests use (started by the machine; restarted here if stopped).
for c in redis-server redis-cli pg_isready mysqladmin; do
  command -v "$c" >/dev/null 2>&1 || { echo "deps: $c is missing (Redis, PostgreSQL and MariaDB come with the machine)" >&2; exit 1; }
done
services
echo "deps: ok" >&2
