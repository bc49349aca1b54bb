#!/usr/bin/env bash
# Runs roomcast's benchmark suite on this machine, bounded in time: builds the
# binary, starts a fresh `roomcast serve` for each scenario, creates the room
# "bench", runs `roomcast bench ...` with --pid so server CPU and RSS are
# measured, prints each scenario's command and JSON, and kills everything it
# started on exit.
#
# The server runs the defaults a user gets (issue 14), with one change:
# --rate-limit 0, because the load generator sends a room's traffic from a
# handful of users (a real room's 20 msg/s come from hundreds of users, each
# under the default 5/10s). Clients behave like real ones: polls use Go's
# net/http with keep-alive, pages of 15, the answer's cursor and the server's
# poll_after_ms. With the default render budget (20/s per viewer) a reader
# may be sent a selection, so readers run with --allow-gaps (duplicates and
# reorderings still fail). Special-case runs (budget 0, hand-made client,
# pages of 100) are kept beside them with a "-special" suffix, not in the
# default set.
#
#   scripts/bench.sh                 # every scenario
#   scripts/bench.sh ws-1k idle-10k  # some of them (names below)
#   QUICK=1 scripts/bench.sh         # small sizes, short windows (smoke test)
#
# Scenarios: poll-hot poll-hot-b2b ws-1k ws-5k ws-10k idle-10k send-burst flv-1 flv-100 flv-1000 flv-2000 rtmp-1000 quiz-10k quiz-10k-proto, rain-10k rain-10k-proto,
# and (not in the default set) poll-hot-special ws-5k-special ws-10k-special (render budget 0,
# every delivery counted; polls: back to back, pages of 100, the minimal HTTP client),
# ws-5k-proto ws-10k-proto: JSON vs protobuf readers, rain-10k-frame-per-tap rain-10k-proto-frame-per-tap
# (a grab frame per tap instead of the web viewer's frames of several taps)
# (flv-* and rtmp-* need ffmpeg: a 2.5 Mbit/s H.264+AAC file is encoded once and cached,
# then published over RTMP by the bench itself, looped and paced by its timestamps
# (`--publish`), which is what lets it report each tag's forwarding delay.)
#
# Environment: DURATION (measured window per scenario, default 20s; QUICK 5s),
# HTTP_PORT (18480), RTMP_PORT (19435), OUT (results dir, default
# /tmp/roomcast-bench-<time>), CACHE (pre-encoded media, ~/.cache/roomcast-bench),
# ROOMCAST_BIN (use this binary instead of building ./cmd/roomcast), SERVER_ARGS (extra
# flags for roomcast serve, e.g. "--big-room -1").
set -euo pipefail
cd "$(dirname "$0")/.."

ALL="poll-hot poll-hot-b2b ws-1k ws-5k ws-10k idle-10k send-burst flv-1 flv-100 flv-1000 flv-2000 rtmp-1000 quiz-10k quiz-10k-proto rain-10k rain-10k-proto"
SCENARIOS="${*:-$ALL}"
QUICK="${QUICK:-}"
DURATION="${DURATION:-$([ -n "$QUICK" ] && echo 5s || echo 20s)}"
HTTP_PORT="${HTTP_PORT:-18480}"
RTMP_PORT="${RTMP_PORT:-19435}"
OUT="${OUT:-/tmp/roomcast-bench-$(date +%Y%m%d-%H%M%S)}"
CACHE="${CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/roomcast-bench}"
URL="http://127.0.0.1:$HTTP_PORT"
SECRET="bench-secret-$RANDOM$RANDOM$RANDOM"
ADMIN="bench-admin-$RANDOM$RANDOM$RANDOM"

# Open files are capped at 20,000 per process here: take all of it.
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

WORK="$(mktemp -d /tmp/roomcast-bench-work.XXXXXX)"
BIN="$WORK/roomcast"
DATA="$WORK/data"
mkdir -p "$OUT" "$DATA"
SERVER_PID=""

cleanup() {
	set +e
	[ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null
	wait 2>/dev/null
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '\n== %s\n' "$*" >&2; }

n() { # n FULL QUICK: a size for this mode
	if [ -n "$QUICK" ]; then echo "$2"; else echo "$1"; fi
}

stop_server() {
	if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""; fi
}

start_server() {
	stop_server
	"$BIN" serve --data "$DATA" --http "127.0.0.1:$HTTP_PORT" --rtmp "127.0.0.1:$RTMP_PORT" \
		--rate-limit 0 --admin-key "$ADMIN" --secret "$SECRET" --log-level warn ${SERVER_ARGS:-} \
		>>"$OUT/server.log" 2>&1 &
	SERVER_PID=$!
	for _ in $(seq 1 150); do
		if curl -sf -o /dev/null "$URL/readyz"; then return 0; fi
		if ! kill -0 "$SERVER_PID" 2>/dev/null; then
			echo "roomcast serve exited; see $OUT/server.log" >&2
			tail -20 "$OUT/server.log" >&2
			exit 1
		fi
		sleep 0.1
	done
	echo "roomcast serve not ready after 15s" >&2
	exit 1
}

STREAM_KEY=""
create_room() {
	local anchor body
	anchor="$("$BIN" token --data "$DATA" --secret "$SECRET" --sub anchor1 --role anchor --ttl 1h)"
	body="$(curl -sf -X POST -H "Authorization: Bearer $anchor" -H 'Content-Type: application/json' \
		-d '{"title":"bench","id":"bench"}' "$URL/api/rooms")" || {
		echo "creating the room failed" >&2
		exit 1
	}
	STREAM_KEY="$(printf '%s' "$body" | sed -n 's/.*"stream_key":"\([^"]*\)".*/\1/p')"
}

FAILED=""
run_bench() { # run_bench NAME ARGS...: one scenario against a fresh server
	local name="$1"
	shift
	local cmd=("$BIN" bench "$@" --url "$URL" --room bench --secret "$SECRET" --pid "$SERVER_PID" --json)
	log "$name"
	printf '$ roomcast bench %s --url %s --room bench --secret $SECRET --pid %s --json\n' "$*" "$URL" "$SERVER_PID"
	# A hard bound on top of the bench's own (ramp + --duration + drain).
	local rc=0
	timeout --signal=INT --kill-after=10 "$(( $(dur_s "$DURATION") + 180 ))" "${cmd[@]}" >"$OUT/$name.json" || rc=$?
	cat "$OUT/$name.json"
	# The server's own histograms (tick, append → write) for this run.
	curl -sf -o "$OUT/$name.metrics" "$URL/metrics" || true
	if [ "$rc" -ne 0 ]; then
		FAILED="$FAILED $name"
		echo "($name: exit status $rc)" >&2
	fi
}

dur_s() { # a Go duration like 20s / 2m / 500ms → whole seconds (rounded up)
	case "$1" in
	*ms) echo 1 ;;
	*m) echo $(( ${1%m} * 60 )) ;;
	*s) echo "${1%s}" | cut -d. -f1 ;;
	*) echo 60 ;;
	esac
}

MEDIA="$CACHE/bench-2500k.flv"
have_media() {
	command -v ffmpeg >/dev/null || return 1
	[ -s "$MEDIA" ] && return 0
	mkdir -p "$CACHE"
	log "encoding $MEDIA once (2.5 Mbit/s 720p H.264 + AAC, 20 s)"
	ffmpeg -hide_banner -loglevel error -y -f lavfi -i testsrc2=size=1280x720:rate=30 -f lavfi -i sine=frequency=440 \
		-c:v libx264 -preset veryfast -b:v 2400k -maxrate 2400k -bufsize 4800k -g 60 -pix_fmt yuv420p \
		-c:a aac -b:a 96k -t 20 -f flv "$MEDIA.tmp" && mv "$MEDIA.tmp" "$MEDIA"
}

if [ -n "${ROOMCAST_BIN:-}" ]; then
	cp "$ROOMCAST_BIN" "$BIN"
else
	log "building"
	go build -o "$BIN" ./cmd/roomcast
fi
{
	echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
	echo "machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(free -g | awk '/Mem:/{print $2}') GiB"
	echo "kernel: $(uname -r)  go: $(go env GOVERSION)  open files: $(ulimit -n)"
	echo "scenarios: $SCENARIOS  duration: $DURATION  results: $OUT"
} | tee "$OUT/machine.txt" >&2

for s in $SCENARIOS; do
	case "$s" in
	poll-hot) # the default config, net/http keep-alive pollers, pages of 15, poll_after_ms
		start_server; create_room
		run_bench "$s" poll --pollers "$(n 200 20)" --ramp 0 --interval auto --limit 15 --client std --allow-gaps \
			--send-rate 20 --senders 2 --duration "$DURATION" ;;
	poll-hot-b2b) # the default config and client, polling back to back (interval 0) to load the server
		start_server; create_room
		run_bench "$s" poll --pollers "$(n 200 20)" --ramp 0 --interval 0 --limit 15 --client std --allow-gaps \
			--send-rate 20 --senders 2 --duration "$DURATION" ;;
	poll-hot-special) # special case: render budget 0, back to back, pages of 100, the minimal client
		SERVER_ARGS="${SERVER_ARGS:-} --render-budget 0" start_server; create_room
		run_bench "$s" poll --pollers "$(n 200 20)" --ramp 0 --interval 0 --limit 100 --client raw \
			--send-rate 20 --senders 2 --duration "$DURATION" ;;
	ws-1k|ws-5k|ws-10k) # the default config: render budget 20/s per viewer
		conns="${s#ws-}"; conns="${conns%k}000"
		start_server; create_room
		run_bench "$s" ws --conns "$(n "$conns" 100)" --ramp 2000 --send-rate 20 --senders 4 --allow-gaps --duration "$DURATION" ;;
	ws-5k-special|ws-10k-special) # special case: render budget 0, every delivery counted
		conns="${s#ws-}"; conns="${conns%k-special}000"
		SERVER_ARGS="${SERVER_ARGS:-} --render-budget 0" start_server; create_room
		run_bench "$s" ws --conns "$(n "$conns" 100)" --ramp 2000 --send-rate 20 --senders 4 --duration "$DURATION" ;;
	ws-5k-proto|ws-10k-proto) # the encodings side by side (issue 11)
		conns=$(n 5000 250); [ "${s#ws-10k}" != "$s" ] && conns=$(n 10000 500)
		start_server; create_room
		run_bench "$s" ws --conns "$conns" --ramp 2000 --send-rate 20 --senders 4 --format proto --allow-gaps --duration "$DURATION" ;;
	idle-10k)
		start_server; create_room
		run_bench "$s" ws --conns "$(n 10000 500)" --ramp 2000 --idle --settle 3s --duration 5s ;;
	send-burst)
		start_server; create_room
		run_bench "$s" send --senders 16 --rate 0 --duration "$DURATION" ;;
	quiz-10k|quiz-10k-proto) # the live quiz (issue 12): 10,000 players, 3 questions, memory mode
		format=json; [ "${s%-proto}" != "$s" ] && format=proto
		SERVER_ARGS="${SERVER_ARGS:-} --quiz-delay 0" start_server; create_room
		run_bench "$s" quiz --players "$(n 10000 200)" --rate 2000 --questions 3 --answer-ms 5000 --format "$format" ;;
	rain-10k|rain-10k-proto|rain-10k-frame-per-tap|rain-10k-proto-frame-per-tap)
		# the red-packet rain (issue 13): 10,000 players tapping 5/s, default --rain-rate, memory mode;
		# each player's taps go as the web viewer sends them (--frame-ms 500: one frame per window);
		# *-frame-per-tap (special, labelled): one frame per tap, naming no taps (--frame-ms 0)
		format=json; case "$s" in *-proto*) format=proto ;; esac
		frame=500; case "$s" in *-frame-per-tap) frame=0 ;; esac
		start_server; create_room
		run_bench "$s" rain --players "$(n 10000 200)" --rate 2000 --taps 5 --packets 1000 --budget 100000 --rain-ms 10000 \
			--format "$format" --frame-ms "$frame" ;;
	flv-*|rtmp-*) # HTTP-FLV viewers or RTMP players; the bench publishes the stream itself, paced by its timestamps
		proto="${s%%-*}"; viewers="${s#*-}"
		if ! have_media; then
			log "$s: skipped (no ffmpeg)"
			continue
		fi
		start_server; create_room
		[ -n "$QUICK" ] && viewers=$(( viewers > 50 ? 50 : viewers ))
		run_bench "$s" "$proto" --viewers "$viewers" --ramp 500 --duration "$DURATION" \
			--publish "$MEDIA" --publish-url "rtmp://127.0.0.1:$RTMP_PORT/live/$STREAM_KEY" \
			$([ "$proto" = rtmp ] && echo --play "rtmp://127.0.0.1:$RTMP_PORT/live/bench") ;;
	*)
		echo "unknown scenario $s (have: $ALL)" >&2
		exit 2 ;;
	esac
done
stop_server

log "results in $OUT"
if [ -n "$FAILED" ]; then
	echo "FAILED:$FAILED" >&2
	exit 1
fi
echo "all scenarios passed their checks" >&2
