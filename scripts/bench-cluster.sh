#!/usr/bin/env bash
# Issue 14's cluster simulation (R24), bounded in time, on this machine: for
# each RUN = NODESxVIEWERS it starts a PRIVATE redis-server (its own port,
# --save '', killed after the run; the shared 6379 is never touched), NODES
# `roomcast serve` nodes (--advertise each, default config + --rate-limit 0)
# on a private PostgreSQL database (roomcast_bench_<rand> on the shared
# 127.0.0.1:5432 server, trust auth, dropped on exit), one room, and one
# `roomcast bench ws --conns VIEWERS --allow-gaps --pid <node>` per node,
# ramped gently. Once every node holds its viewers it measures a quiet span
# (Redis background), then sends RATE msg/s from SENDERS users on node 0
# (`roomcast bench send`) for DURATION and reports, per node: viewers, server
# CPU % and µs per delivery over the send window, RSS and per viewer,
# delivered/expected, p50/p99 send→receive; and Redis commands per message
# and per second (INFO stats before/after, background subtracted),
# INFO commandstats, Redis CPU per message, and what /api/route answers.
#
#   scripts/bench-cluster.sh                     # 1x3000 3x1000 3x3000 (small: shows the scaling)
#   scripts/bench-cluster.sh cluster-30k         # 3x10000 (saturates a 2-core box)
#   scripts/bench-cluster.sh 1x3000 3x1000 3x10000
#   QUICK=1 scripts/bench-cluster.sh             # 1x100 3x100, 5 s windows (smoke test)
#
# Run it under the bench lock: flock /tmp/roomcast-bench.lock scripts/bench-cluster.sh ...
#
# Environment: DURATION (send window, default 20s; QUICK 5s), RATE (20),
# SENDERS (4), RAMP (connections/s per node, 200), QUIET (background span
# before the sends, seconds, default = DURATION), REDIS_PORT (16990), HTTP_BASE (18580: node i on HTTP_BASE+i), PG
# (admin URL, postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable),
# OUT (results dir, /tmp/roomcast-bench-cluster-<time>), ROOMCAST_BIN (use
# this binary instead of building ./cmd/roomcast), SERVER_ARGS (extra flags
# for every node).
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK="${QUICK:-}"
if [ "$#" -gt 0 ]; then RUNS="$*"; elif [ -n "$QUICK" ]; then RUNS="1x100 3x100"; else RUNS="1x3000 3x1000 3x3000"; fi
DURATION="${DURATION:-$([ -n "$QUICK" ] && echo 5 || echo 20)}"
DURATION="${DURATION%s}"
RATE="${RATE:-20}"
SENDERS="${SENDERS:-4}"
RAMP="${RAMP:-200}"
QUIET="${QUIET:-$DURATION}"
REDIS_PORT="${REDIS_PORT:-16990}"
HTTP_BASE="${HTTP_BASE:-18580}"
PG="${PG:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}"
OUT="${OUT:-/tmp/roomcast-bench-cluster-$(date +%Y%m%d-%H%M%S)}"
SECRET="bench-secret-$RANDOM$RANDOM$RANDOM"
ADMIN="bench-admin-$RANDOM$RANDOM$RANDOM"
DBNAME="roomcast_bench_$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')"
DSN="${PG%/*}/$DBNAME?sslmode=disable"
TCK="$(getconf CLK_TCK)"

# Open files are capped at 20,000 per process here: one bench process per node.
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

WORK="$(mktemp -d /tmp/roomcast-bench-cluster.XXXXXX)"
BIN="$WORK/roomcast"
mkdir -p "$OUT"
REDIS_PID=""
NODE_PIDS=()
BENCH_PIDS=()
DB_MADE=""

log() { printf '\n== %s\n' "$*" >&2; }
die() { echo "bench-cluster: $*" >&2; exit 1; }
rcli() { redis-cli -p "$REDIS_PORT" "$@"; }
rcli_ok() { rcli ping >/dev/null 2>&1; }

stop_pids() { # stop_pids PID...: SIGTERM each (ours, by id), then wait for it
	local p
	for p in "$@"; do kill "$p" 2>/dev/null || true; done
	for p in "$@"; do wait "$p" 2>/dev/null || true; done
}

stop_run() {
	[ "${#BENCH_PIDS[@]}" -gt 0 ] && stop_pids "${BENCH_PIDS[@]}"
	[ "${#NODE_PIDS[@]}" -gt 0 ] && stop_pids "${NODE_PIDS[@]}"
	[ -n "$REDIS_PID" ] && stop_pids "$REDIS_PID"
	BENCH_PIDS=() NODE_PIDS=() REDIS_PID=""
	return 0
}

cleanup() {
	set +e
	stop_run
	[ -n "$DB_MADE" ] && psql -q "$PG" -c "DROP DATABASE IF EXISTS $DBNAME WITH (FORCE)" >/dev/null 2>&1
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }          # utime + stime
rss_kib() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }
stat_of() { printf '%s\n' "$1" | sed -n "s/^$2:\([0-9.]*\).*/\1/p" | head -1; } # stat_of "INFO text" field
ws_conns() { curl -sf "$1/metrics" | awk '$1 == "roomcast_ws_connections" {print int($2)}'; }

wait_until() { # wait_until SECONDS WHAT CMD...: poll CMD every 0.2 s
	local limit="$1" what="$2" i
	shift 2
	for i in $(seq 1 $((limit * 5))); do
		if "$@"; then return 0; fi
		sleep 0.2
	done
	die "timed out after ${limit}s waiting for $what"
}

start_redis() {
	redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
		--dir "$WORK" --logfile "$OUT/redis.log" --daemonize no &
	REDIS_PID=$!
	wait_until 10 "redis-server on $REDIS_PORT" rcli_ok
}

node_url() { echo "http://127.0.0.1:$((HTTP_BASE + $1))"; }
node_ready() { curl -sf -o /dev/null "$(node_url "$1")/readyz"; }

start_nodes() { # start_nodes N
	local i
	for i in $(seq 0 $(($1 - 1))); do
		mkdir -p "$WORK/node$i"
		"$BIN" serve --data "$WORK/node$i" --http "127.0.0.1:$((HTTP_BASE + i))" --rtmp "" \
			--advertise "$(node_url "$i")" --redis "redis://127.0.0.1:$REDIS_PORT/0" --db "$DSN" \
			--rate-limit 0 --admin-key "$ADMIN" --secret "$SECRET" --log-level warn ${SERVER_ARGS:-} \
			>>"$OUT/node$i.log" 2>&1 &
		NODE_PIDS+=($!)
	done
	for i in $(seq 0 $(($1 - 1))); do
		wait_until 30 "node $i ready (see $OUT/node$i.log)" node_ready "$i"
	done
}

create_room() { # create_room ID on node 0
	local anchor i
	# One anchor per room: an anchor's second POST answers with its first room.
	anchor="$("$BIN" token --data "$WORK/node0" --secret "$SECRET" --sub "anchor-$1" --role anchor --ttl 1h)"
	curl -sf -o /dev/null -X POST -H "Authorization: Bearer $anchor" -H 'Content-Type: application/json' \
		-d "{\"title\":\"bench\",\"id\":\"$1\"}" "$(node_url 0)/api/rooms" || die "creating room $1 failed"
	for i in $(seq 0 $((NODES_N - 1))); do
		wait_until 10 "room $1 on node $i" curl -sf -o /dev/null "$(node_url "$i")/api/rooms/$1"
	done
}

min_conns() { # min_conns N: the fewest WebSocket connections on any node
	local i c min=""
	for i in $(seq 0 $(($1 - 1))); do
		c="$(ws_conns "$(node_url "$i")")"
		c="${c:-0}"
		if [ -z "$min" ] || [ "$c" -lt "$min" ]; then min="$c"; fi
	done
	echo "$min"
}

wait_viewers() { # wait_viewers N VIEWERS: all of them, or ≥ 95 % and no change for 10 s (a dial timed out on a busy box)
	local limit=$(($2 / RAMP * 10 + 120)) start=$SECONDS last=-1 since=$SECONDS c
	while [ $((SECONDS - start)) -lt "$limit" ]; do
		c="$(min_conns "$1")"
		[ "$c" -ge "$2" ] && return 0
		if [ "$c" != "$last" ]; then last="$c" since=$SECONDS; fi
		if [ $((SECONDS - since)) -ge 10 ] && [ $((c * 100)) -ge $(($2 * 95)) ]; then
			echo "bench-cluster: going on with $c of $2 viewers on the emptiest node" >&2
			return 0
		fi
		sleep 0.5
	done
	die "timed out after ${limit}s waiting for $2 viewers on each node (fewest: $last)"
}

routes() { # routes N ROOM: which node /api/route sends 12 users to, asked on each node
	local i u first
	for i in $(seq 0 $(($1 - 1))); do
		printf 'asked node %d:' "$i"
		for u in $(seq 1 12); do
			first="$(curl -sf "$(node_url "$i")/api/route?room=$2&uid=u$u" | jq -r '.nodes | map(sub("http://127.0.0.1:"; "")) | join("+")')"
			printf ' %s' "$first"
		done
		echo
	done
}

run_one() { # run_one NODES VIEWERS
	local nodes="$1" viewers="$2" name="$1x$2" room="c$1x$2" i
	local dir="$OUT/$name"
	mkdir -p "$dir"
	log "$name: $nodes node(s) × $viewers viewers, $RATE msg/s from $SENDERS senders on node 0, ${DURATION}s"
	start_redis
	start_nodes "$nodes"
	NODES_N="$nodes" create_room "$room"
	local rss0=()
	for i in $(seq 0 $((nodes - 1))); do rss0+=("$(rss_kib "${NODE_PIDS[$i]}")"); done

	# Readers: one bench process per node, window ended by SIGINT after the sends.
	for i in $(seq 0 $((nodes - 1))); do
		"$BIN" bench ws --url "$(node_url "$i")" --room "$room" --secret "$SECRET" --pid "${NODE_PIDS[$i]}" \
			--conns "$viewers" --ramp "$RAMP" --timeout 30s --allow-gaps --settle 1s --duration 1h --json \
			>"$dir/ws-node$i.json" 2>"$dir/ws-node$i.log" &
		BENCH_PIDS+=($!)
	done
	wait_viewers "$nodes" "$viewers"
	sleep 3 # settle: subscriptions, presence, placement declarations
	routes "$nodes" "$room" >"$dir/routes.txt"

	# Background: Redis commands per second with the viewers on and nobody sending.
	local q0 q1 before after
	q0="$(rcli info stats)"
	sleep "$QUIET"
	q1="$(rcli info stats)"
	rcli config resetstat >/dev/null
	before="$(rcli info all)"
	local cpu0=() cpu1=() rss1=() t0 t1
	for i in $(seq 0 $((nodes - 1))); do cpu0+=("$(cpu_ticks "${NODE_PIDS[$i]}")"); done
	t0="$(date +%s.%N)"
	"$BIN" bench send --url "$(node_url 0)" --room "$room" --secret "$SECRET" --senders "$SENDERS" \
		--rate "$RATE" --duration "${DURATION}s" --json >"$dir/send.json" 2>"$dir/send.log" || true
	sleep 1 # the last batch's deliveries
	t1="$(date +%s.%N)"
	for i in $(seq 0 $((nodes - 1))); do
		cpu1+=("$(cpu_ticks "${NODE_PIDS[$i]}")")
		rss1+=("$(rss_kib "${NODE_PIDS[$i]}")")
	done
	after="$(rcli info all)"
	pubsub "$dir/pubsub.txt"
	printf '%s\n' "$after" >"$dir/redis-info.txt"
	routes "$nodes" "$room" >>"$dir/routes.txt"
	stop_pids_int "${BENCH_PIDS[@]}"
	BENCH_PIDS=()
	stop_run

	report "$name" "$nodes" "$viewers" "$dir" "$q0" "$q1" "$before" "$after" "$t0" "$t1" \
		"${cpu0[*]}" "${cpu1[*]}" "${rss0[*]}" "${rss1[*]}" | tee "$dir/summary.md"
}

pubsub() { # pubsub FILE: each (shard) channel and its subscribers
	local ch out=""
	for ch in $(rcli pubsub shardchannels); do out="$out $ch=$(rcli pubsub shardnumsub "$ch" | sed -n 2p)"; done
	for ch in $(rcli pubsub channels); do out="$out $ch=$(rcli pubsub numsub "$ch" | sed -n 2p)"; done
	echo "${out:- none}" >"$1"
}

stop_pids_int() { # SIGINT: a bench prints its report when interrupted
	local p
	for p in "$@"; do kill -INT "$p" 2>/dev/null || true; done
	for p in "$@"; do wait "$p" 2>/dev/null || true; done
}

report() {
	local name="$1" nodes="$2" viewers="$3" dir="$4" q0="$5" q1="$6" before="$7" after="$8" t0="$9" t1="${10}"
	local cpu0=(${11}) cpu1=(${12}) rss0=(${13}) rss1=(${14})
	local win acked cmds bg bgps redis_cpu i j room_id="c$name"
	win="$(echo "$t1 - $t0" | bc -l)"
	acked="$(jq '.send.acked' "$dir/send.json")"
	cmds=$(( $(stat_of "$after" total_commands_processed) - $(stat_of "$before" total_commands_processed) - 1 ))
	bgps="$(echo "($(stat_of "$q1" total_commands_processed) - $(stat_of "$q0" total_commands_processed) - 1) / $QUIET" | bc -l)"
	bg="$(echo "$bgps * $win" | bc -l)"
	redis_cpu="$(echo "$(stat_of "$after" used_cpu_sys) + $(stat_of "$after" used_cpu_user) - $(stat_of "$before" used_cpu_sys) - $(stat_of "$before" used_cpu_user)" | bc -l)"
	echo "### $name — $nodes node(s) × $viewers WebSocket viewers, $RATE msg/s from $SENDERS senders on node 0"
	echo
	echo "date $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo ?), load $(cut -d' ' -f1-3 /proc/loadavg), send window ${DURATION}s + 1 s"
	jq -r '"sends: \(.send.acked) acked of \(.send.sent), \(.send.acks_per_s)/s, send→ack p50 \(.send.latency.p50_ms) ms p99 \(.send.latency.p99_ms) ms, errors \(.send.errors)"' "$dir/send.json"
	echo
	echo "| node | viewers | server CPU | µs CPU per delivery | RSS | per viewer | delivered / expected | bytes per delivery | p50 | p99 |"
	echo "|---|---|---|---|---|---|---|---|---|---|"
	for i in $(seq 0 $((nodes - 1))); do
		j="$dir/ws-node$i.json"
		local cpu_s conn got
		cpu_s="$(echo "(${cpu1[$i]} - ${cpu0[$i]}) / $TCK" | bc -l)"
		conn="$(jq '.conns.connected' "$j")"
		got="$(jq '.delivery.bench_messages' "$j")"
		printf '| %d%s | %s | %.1f %% | %.2f | %d MiB | %.1f KiB | %s / %s | %s | %s ms | %s ms |\n' "$i" \
			"$([ "$i" = 0 ] && echo ' (+ senders)')" "$conn" \
			"$(echo "100 * $cpu_s / $win" | bc -l)" "$(echo "if ($got > 0) $cpu_s * 1000000 / $got else 0" | bc -l)" \
			$(( ${rss1[$i]} / 1024 )) "$(echo "(${rss1[$i]} - ${rss0[$i]}) / $conn" | bc -l)" \
			"$got" "$(( acked * conn ))" "$(jq '.delivery.bytes_per_delivery' "$j")" "$(jq '.delivery.latency.p50_ms' "$j")" "$(jq '.delivery.latency.p99_ms' "$j")"
	done
	echo
	printf 'Redis: %d commands in %.1f s (background %.1f/s measured over %d s before the sends, ≈ %.0f of them);\n' \
		"$cmds" "$win" "$bgps" "$QUIET" "$bg"
	printf '**%.2f commands per message** all in, **%.2f net of background**; %.0f commands/s while sending; Redis CPU %.1f µs per message (%.1f %% of a core)\n' \
		"$(echo "$cmds / $acked" | bc -l)" "$(echo "($cmds - $bg) / $acked" | bc -l)" "$(echo "$cmds / $win" | bc -l)" \
		"$(echo "$redis_cpu * 1000000 / $acked" | bc -l)" "$(echo "100 * $redis_cpu / $win" | bc -l)"
	echo
	local us_all="" cpu_s2 got2
	for i in $(seq 0 $((nodes - 1))); do
		cpu_s2="$(echo "(${cpu1[$i]} - ${cpu0[$i]}) / $TCK" | bc -l)"
		got2="$(jq '.delivery.bench_messages' "$dir/ws-node$i.json")"
		us_all="$us_all$(printf '%.2f' "$(echo "if ($got2 > 0) $cpu_s2 * 1000000 / $got2 else 0" | bc -l)") "
	done
	printf '| %s | %d × %d | %d | %.0f | %.0f | %.2f | %.2f | %s | %s |\n' "$name" "$nodes" "$viewers" "$acked" \
		"$(echo "$cmds / $win" | bc -l)" "$bgps" "$(echo "$cmds / $acked" | bc -l)" "$(echo "($cmds - $bg) / $acked" | bc -l)" \
		"$(sed -n "s/.*:{$room_id}:c=\([0-9]*\).*/\1/p" "$dir/pubsub.txt")" "${us_all% }" >>"$OUT/overview.rows"
	echo "INFO commandstats over the window (calls, per message):"
	echo
	printf '%s\n' "$after" | sed -n 's/^cmdstat_\([^:]*\):calls=\([0-9]*\),usec=\([0-9]*\).*/\1 \2 \3/p' | sort -k2,2nr |
		awk -v m="$acked" '{printf "    %-14s %7d  %6.2f/msg  %6.1f µs/call\n", $1, $2, $2 / m, $3 / $2}'
	echo
	echo "Pub/sub subscribers per channel during the sends: $(cat "$dir/pubsub.txt")"
	echo
	echo "/api/route nodes (ports) for users u1..u12, asked on each node, before and after the sends:"
	echo
	sed 's/^/    /' "$dir/routes.txt"
	echo
	if jq -e 'select(.violations | length > 0)' "$dir"/ws-node*.json >/dev/null 2>&1; then
		echo "violations: $(jq -c '.violations' "$dir"/ws-node*.json | tr '\n' ' ')"
	fi
}

if [ -n "${ROOMCAST_BIN:-}" ]; then
	cp "$ROOMCAST_BIN" "$BIN"
else
	log "building"
	go build -o "$BIN" ./cmd/roomcast
fi
psql -q "$PG" -c "CREATE DATABASE $DBNAME" >/dev/null || die "cannot create database $DBNAME on $PG"
DB_MADE=1
{
	echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
	echo "machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(free -g | awk '/Mem:/{print $2}') GiB, load $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "redis: $(redis-server --version | cut -d' ' -f3)  open files: $(ulimit -n)"
	echo "runs: $RUNS  send window: ${DURATION}s  rate: $RATE/s  senders: $SENDERS  ramp: $RAMP/s per node  results: $OUT"
} | tee "$OUT/machine.txt" >&2

for r in $RUNS; do
	[ "$r" = cluster-30k ] && r=3x10000
	case "$r" in
	[0-9]*x[0-9]*) run_one "${r%%x*}" "${r#*x}" ;;
	*) die "unknown run $r (want NODESxVIEWERS, e.g. 3x10000, or cluster-30k)" ;;
	esac
done
{
	echo "| run | nodes × viewers | messages | Redis commands/s (sending) | background/s (quiet) | commands per message | net of background | room channel subscribers | µs CPU per delivery, node 0 1 2 |"
	echo "|---|---|---|---|---|---|---|---|---|"
	cat "$OUT/overview.rows"
	echo
	cat "$OUT"/*/summary.md
} >"$OUT/summary.md"
sed -n '1,/^$/p' "$OUT/summary.md" >&2
log "results in $OUT (summary.md)"
