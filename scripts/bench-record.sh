#!/bin/bash
# Issue 10: the send path's ack p99 and the fan-out cost with the danmaku
# archive and recording on and off. Three configurations, each on a fresh
# `roomcast serve --render-budget 0 --rate-limit 0` with ffmpeg publishing
# a 640x360 1 Mbps H.264/AAC stream (-c copy, in real time):
#   baseline  the stream is live in another room: the bench room has no session
#             (no video_ms, no archive)
#   archive   the bench room is live, --record=false (clock + archive, no video)
#   record    the bench room is live, default --record=true (clock + archive + video)
# Each runs `bench send --senders 16 --rate 0` (saturating burst) and
# `bench ws --conns 1000 --send-rate 20` (fan-out). REPS=2 by default.
set -eu
cd "$(dirname "$0")/.."
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
go build -o "$T/roomcast" ./cmd/roomcast
BIN=$T/roomcast
S=bench-secret-0123456789
ffmpeg -hide_banner -loglevel error -y -f lavfi -i testsrc=size=640x360:rate=25 -f lavfi -i sine=frequency=440:sample_rate=44100 \
  -t 20 -c:v libx264 -preset ultrafast -g 50 -b:v 1000k -pix_fmt yuv420p -c:a aac -b:a 64k -f flv "$T/sample.flv"
run() { # name, server args, room the stream goes to
  local name=$1 args=$2 sroom=$3 d hp=18700 rp=19700 pid fpid key
  d=$(mktemp -d -p "$T")
  # shellcheck disable=SC2086
  $BIN serve --http 127.0.0.1:$hp --rtmp 127.0.0.1:$rp --data "$d" --secret $S --admin-key ak --render-budget 0 --rate-limit 0 --log-level warn $args >"$d/log" 2>&1 &
  pid=$!
  for _ in $(seq 50); do curl -sf localhost:$hp/readyz >/dev/null && break; sleep 0.2; done
  for r in bench other; do
    curl -s -XPOST -H 'Authorization: Bearer ak' localhost:$hp/api/rooms -d "{\"id\":\"$r\",\"title\":\"$r\",\"anchor\":\"a-$r\"}" >/dev/null
  done
  key=$(curl -s -H 'Authorization: Bearer ak' localhost:$hp/api/rooms/$sroom | python3 -c 'import json,sys;print(json.load(sys.stdin)["stream_key"])')
  ffmpeg -hide_banner -loglevel error -re -stream_loop -1 -i "$T/sample.flv" -c copy -f flv "rtmp://127.0.0.1:$rp/live/$key" &
  fpid=$!
  sleep 3
  echo "=== $name: send"
  $BIN bench send --url http://127.0.0.1:$hp --room bench --secret $S --senders 16 --rate 0 --duration 15s --pid $pid --progress=false
  echo "=== $name: ws"
  $BIN bench ws --url http://127.0.0.1:$hp --room bench --secret $S --conns 1000 --ramp 1000 --send-rate 20 --senders 4 --duration 15s --pid $pid --progress=false
  curl -s localhost:$hp/metrics | grep -E "^roomcast_archive_(written|dropped)_total" || true
  kill $fpid $pid; wait $fpid $pid 2>/dev/null || true
}
for rep in $(seq "${REPS:-2}"); do
  run "[$rep] baseline" "--record=true" other
  run "[$rep] archive on, recording off" "--record=false" bench
  run "[$rep] archive and recording on" "--record=true" bench
done
