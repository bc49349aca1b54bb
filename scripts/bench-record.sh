#!/bin/bash
# Issue 10: the send path's ack p99 and the fan-out cost with the danmaku
# archive and recording on and off. Each configuration runs on a fresh
# `roomcast serve` with ffmpeg publishing a 640x360 1 Mbps H.264/AAC stream
# (-c copy, in real time), in each MODE (MODES, default "default special"):
#   default   the server in the DEFAULT configuration (per-user rate limit
#             5/10s, render budget 20/s): the bench's senders cycle through
#             enough distinct users (`bench send --users`, a fresh user prefix
#             per run) that none is refused, and the fan-out run sends 20/s
#             from 64 users over HTTP (--allow-gaps: the budget may skip the
#             viewers' low-priority enter/leave notices; every bench message is
#             still checked)
#   special   the earlier run, labelled: `--render-budget 0 --rate-limit 0`,
#             one user per sender
# and three configurations (CONFIGS):
#   baseline  the stream is live in another room: the bench room has no session
#             (no video_ms, no archive)
#   archive   the bench room is live, --record=false (clock + archive, no video)
#   record    the bench room is live, default --record=true (clock + archive + video)
# Each runs `bench send --senders 16 --rate 0` (saturating burst; default mode:
# 40,000 users),
# `bench send --senders 16 --rate 2000` (a fixed, realistic busy rate: the ack
# latency without queueing; default mode: 8,000 users) and `bench ws --conns 1000 --send-rate 20`
# (fan-out). REPS=2 by default; CONFIGS picks configurations (default
# "baseline archive record"); PROFILE=dir saves a 10 s server CPU profile
# taken during each saturating burst as dir/<mode>-<config>-<rep>.pprof.
# ROOMCAST_BIN=path runs a given build.
set -eu
cd "$(dirname "$0")/.."
T=$(mktemp -d)
KILL= # the server and ffmpeg of the run in progress: stopped on any exit, so a
# failed run leaves nothing holding the caller's flock or the ports
trap '[ -z "$KILL" ] || kill $KILL 2>/dev/null; rm -rf "$T"' EXIT
BIN=${ROOMCAST_BIN:-}
if [ -z "$BIN" ]; then # ROOMCAST_BIN=path runs a given build instead
  go build -o "$T/roomcast" ./cmd/roomcast
  BIN=$T/roomcast
fi
S=bench-secret-0123456789
ffmpeg -hide_banner -loglevel error -y -f lavfi -i testsrc=size=640x360:rate=25 -f lavfi -i sine=frequency=440:sample_rate=44100 \
  -t 20 -c:v libx264 -preset ultrafast -g 50 -b:v 1000k -pix_fmt yuv420p -c:a aac -b:a 64k -f flv "$T/sample.flv"
MODES=${MODES:-default special}
if [[ " $MODES " == *" default "* ]] && ! $BIN bench send -h 2>&1 | grep -q -- '-users'; then
  echo "bench-record: this build's bench send has no --users: MODES=default cannot keep within the default rate limit" >&2
  exit 2
fi
run() { # name, server args, room the stream goes to, profile name, mode
  local name="$1 [$5]" args=$2 sroom=$3 mode=$5 d hp=18700 rp=19700 pid fpid key ppid burst=() fixed=() wsargs=(--senders 4)
  if [ "$mode" = special ]; then
    args="--render-budget 0 --rate-limit 0 $args"
  else
    burst=(--users 40000 --user-prefix burst-) fixed=(--users 8000 --user-prefix fixed-) wsargs=(--senders 64 --allow-gaps)
  fi
  d=$(mktemp -d -p "$T")
  # shellcheck disable=SC2086
  $BIN serve --http 127.0.0.1:$hp --rtmp 127.0.0.1:$rp --data "$d" --secret $S --admin-key ak --log-level warn $args >"$d/log" 2>&1 &
  pid=$!
  KILL=$pid
  for _ in $(seq 50); do curl -sf localhost:$hp/readyz >/dev/null && break; sleep 0.2; done
  for r in bench other; do
    curl -s -XPOST -H 'Authorization: Bearer ak' localhost:$hp/api/rooms -d "{\"id\":\"$r\",\"title\":\"$r\",\"anchor\":\"a-$r\"}" >/dev/null
  done
  key=$(curl -s -H 'Authorization: Bearer ak' localhost:$hp/api/rooms/$sroom | python3 -c 'import json,sys;print(json.load(sys.stdin)["stream_key"])')
  ffmpeg -hide_banner -loglevel error -re -stream_loop -1 -i "$T/sample.flv" -c copy -f flv "rtmp://127.0.0.1:$rp/live/$key" &
  fpid=$!
  KILL="$pid $fpid"
  sleep 3
  echo "=== $name: server flags: $args ($(uptime))"
  echo "=== $name: send (saturating)"
  ppid=
  if [ -n "${PROFILE:-}" ]; then
    mkdir -p "$PROFILE"
    (sleep 3; curl -s -H 'Authorization: Bearer ak' "localhost:$hp/debug/pprof/profile?seconds=10" >"$PROFILE/$4.pprof") &
    ppid=$!
  fi
  $BIN bench send --url http://127.0.0.1:$hp --room bench --secret $S --senders 16 "${burst[@]}" --rate 0 --duration 15s --pid $pid --progress=false
  [ -z "$ppid" ] || wait "$ppid"
  echo "=== $name: send (fixed rate 2000/s)"
  $BIN bench send --url http://127.0.0.1:$hp --room bench --secret $S --senders 16 "${fixed[@]}" --rate 2000 --duration 15s --pid $pid --progress=false
  echo "=== $name: ws"
  $BIN bench ws --url http://127.0.0.1:$hp --room bench --secret $S --conns 1000 --ramp 1000 --send-rate 20 "${wsargs[@]}" --duration 15s --pid $pid --progress=false
  curl -s localhost:$hp/metrics | grep -E "^roomcast_archive_(written|dropped)_total" || true
  kill $fpid $pid; wait $fpid $pid 2>/dev/null || true
  KILL=
}
for rep in $(seq "${REPS:-2}"); do
  for m in $MODES; do
    for c in ${CONFIGS:-baseline archive record}; do
      case $c in
      baseline) run "[$rep] baseline" "--record=true" other "$m-$c-$rep" "$m" ;;
      archive) run "[$rep] archive on, recording off" "--record=false" bench "$m-$c-$rep" "$m" ;;
      record) run "[$rep] archive and recording on" "--record=true" bench "$m-$c-$rep" "$m" ;;
      esac
    done
  done
done
