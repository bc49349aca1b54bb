#!/usr/bin/env bash
# Group commit (issue 14): Redis commands per message sent into one hot room
# across three nodes. Starts a PRIVATE redis-server (so INFO counts only these
# nodes; the machine's shared Redis is never touched), a fresh PostgreSQL
# database, three `roomcast serve --redis … --db …` nodes in the DEFAULT
# configuration (rate limit 5/10s per user, kept per node), creates the room
# "bench", resets Redis's statistics, runs one `roomcast bench send` per node
# at once, its senders cycling through USERS distinct users each (so every
# user stays within the default rate limit), then prints
# per node acks/s and send→ack p99, and Redis's total_commands_processed
# (INFO stats; commands run inside scripts count, as Redis counts them) and
# INFO commandstats per message acknowledged.
#
#   flock /tmp/roomcast-bench.lock scripts/bench-send-cluster.sh              # 64 senders flat out
#   SENDERS="1000 1000 1000" RATE=3334 flock /tmp/roomcast-bench.lock scripts/bench-send-cluster.sh
#   SEND_ARGS=--client-msg-id …   # idempotent sends, as the JS client makes them
#   NODE_ARGS="--rate-limit 0" USERS=0 …   # the earlier, labelled special variant: no rate limit, one user per sender
#
# Environment: SENDERS (senders per node, default "21 22 21"), RATE (messages/s
# per node, 0 = each sender back to back, default 0), SEND_ARGS (more `bench
# send` flags, e.g. "--via ws"), USERS (distinct users per node's bench, default
# 8000: 24,000 users stay within 5/10s up to about 20,000 sends/s over 15 s;
# 0 = one user per sender), NODE_ARGS (more `serve` flags, printed as special),
# PROFILE (a dir: save a 10 s CPU profile of node 0 there), DURATION (15s),
# REDIS_PORT (16999), HTTP_PORT
# (18491; nodes use it and the next two), PG (postgres://postgres@127.0.0.1:5432),
# ROOMCAST_BIN (use this binary instead of building ./cmd/roomcast), BENCH_BIN
# (run `bench send` from this binary, e.g. to compare servers with one client), OUT
# (results dir, default /tmp/roomcast-send-cluster-<time>).
set -euo pipefail
cd "$(dirname "$0")/.."

read -r -a SENDERS <<<"${SENDERS:-21 22 21}"
RATE="${RATE:-0}"
DURATION="${DURATION:-15s}"
USERS="${USERS:-8000}"
NODE_ARGS="${NODE_ARGS:-}"
REDIS_PORT="${REDIS_PORT:-16999}"
HTTP_PORT="${HTTP_PORT:-18491}"
PG="${PG:-postgres://postgres@127.0.0.1:5432}"
OUT="${OUT:-/tmp/roomcast-send-cluster-$(date +%Y%m%d-%H%M%S)}"
SECRET="bench-secret-$RANDOM$RANDOM$RANDOM"
ADMIN="bench-admin-$RANDOM$RANDOM$RANDOM"
DB="rc_sendbench_$RANDOM$RANDOM"
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

WORK="$(mktemp -d /tmp/roomcast-send-cluster.XXXXXX)"
mkdir -p "$OUT"
PIDS=()
REDIS_PID=""
DB_MADE=""
cleanup() {
	set +e
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	[ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null
	wait 2>/dev/null
	[ -n "$DB_MADE" ] && psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

BIN="${ROOMCAST_BIN:-$WORK/roomcast}"
[ -n "${ROOMCAST_BIN:-}" ] || go build -o "$BIN" ./cmd/roomcast
BENCH_BIN="${BENCH_BIN:-$BIN}"

if redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
	echo "something already listens on $REDIS_PORT; set REDIS_PORT" >&2
	exit 1
fi
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
	--dir "$WORK" >"$OUT/redis.log" 2>&1 &
REDIS_PID=$!
for _ in $(seq 1 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
psql -q "$PG/postgres" -c "CREATE DATABASE $DB" >/dev/null
DB_MADE=1

URLS=()
for i in 0 1 2; do
	port=$((HTTP_PORT + i))
	mkdir -p "$WORK/n$i"
	# shellcheck disable=SC2086 # NODE_ARGS is a list of flags
	"$BIN" serve --data "$WORK/n$i" --http "127.0.0.1:$port" --rtmp "" \
		--redis "redis://127.0.0.1:$REDIS_PORT/0" --db "$PG/$DB?sslmode=disable" \
		--secret "$SECRET" --admin-key "$ADMIN" --log-level warn $NODE_ARGS \
		>>"$OUT/node$i.log" 2>&1 &
	PIDS+=($!)
	URLS+=("http://127.0.0.1:$port")
done
for i in 0 1 2; do
	ok=""
	for _ in $(seq 1 150); do
		if curl -sf -o /dev/null "${URLS[$i]}/readyz"; then ok=1; break; fi
		sleep 0.1
	done
	[ -n "$ok" ] || { echo "node $i not ready; see $OUT/node$i.log" >&2; tail -20 "$OUT/node$i.log" >&2; exit 1; }
done
anchor="$("$BIN" token --data "$WORK/n0" --secret "$SECRET" --sub anchor1 --role anchor --ttl 1h)"
curl -sf -o /dev/null -X POST -H "Authorization: Bearer $anchor" -H 'Content-Type: application/json' \
	-d '{"title":"bench","id":"bench"}' "${URLS[0]}/api/rooms" || { echo "creating the room failed" >&2; exit 1; }

redis-cli -p "$REDIS_PORT" config resetstat >/dev/null
echo "uptime: $(uptime)"
BENCH=()
for i in 0 1 2; do
	# shellcheck disable=SC2086 # SEND_ARGS is a list of flags
	users=()
	[ "$USERS" = 0 ] || users=(--users "$USERS" --user-prefix "n$i-u")
	"$BENCH_BIN" bench send --url "${URLS[$i]}" --room bench --secret "$SECRET" --pid "${PIDS[$i]}" "${users[@]}" \
		--senders "${SENDERS[$i]}" --rate "$RATE" --duration "$DURATION" --progress=false --json ${SEND_ARGS:-} \
		>"$OUT/send$i.json" 2>"$OUT/send$i.err" &
	BENCH+=($!)
done
if [ -n "${PROFILE:-}" ]; then # a 10 s CPU profile of node 0, 3 s into the run
	mkdir -p "$PROFILE"
	(sleep 3; curl -s -H "Authorization: Bearer $ADMIN" "${URLS[0]}/debug/pprof/profile?seconds=10" >"$PROFILE/node0.pprof") &
	BENCH+=($!)
fi
rc=0
for p in "${BENCH[@]}"; do wait "$p" || rc=1; done
redis-cli -p "$REDIS_PORT" info stats >"$OUT/info-stats.txt"
redis-cli -p "$REDIS_PORT" info commandstats >"$OUT/commandstats.txt"
for i in 0 1 2; do curl -s "${URLS[$i]}/metrics" | grep -E '^roomcast_commit_(batch_size_(sum|count)|batch_limit|linger_seconds|batches_total)' >"$OUT/metrics$i.txt" || true; done
[ "$rc" = 0 ] || { echo "a bench send failed; see $OUT/send*.err" >&2; cat "$OUT"/send*.err >&2; }

echo "command: SENDERS=\"${SENDERS[*]}\" RATE=$RATE USERS=$USERS DURATION=$DURATION SEND_ARGS=\"${SEND_ARGS:-}\" NODE_ARGS=\"$NODE_ARGS\" scripts/bench-send-cluster.sh"
if [ -n "$NODE_ARGS" ]; then echo "config: SPECIAL (nodes run: $NODE_ARGS)"; else echo "config: default (nodes run no flag beyond addresses, secrets and --log-level)"; fi
acked=0
for i in 0 1 2; do
	jq -r --arg i "$i" '"node \($i): senders \(.send.writers) sent \(.send.sent) acked \(.send.acked) acks/s \(.send.acks_per_s) p50 \(.send.latency.p50_ms) ms p99 \(.send.latency.p99_ms) ms errors \(.send.errors)"' "$OUT/send$i.json"
	acked=$((acked + $(jq -r '.send.acked' "$OUT/send$i.json")))
	sum=$(awk '/batch_size_sum/ {print $2}' "$OUT/metrics$i.txt"); cnt=$(awk '/batch_size_count/ {print $2}' "$OUT/metrics$i.txt")
	awk -v s="$sum" -v c="$cnt" -v i="$i" 'BEGIN { if (c > 0) printf "node %s: %d append calls, %.1f messages per call (whole run)\n", i, c, s / c }'
	ends=$(sed -n 's/^roomcast_commit_batches_total{end="\([a-z]*\)"} \(.*\)/\1 \2/p' "$OUT/metrics$i.txt" | tr '\n' ' ')
	linger=$(awk '/^roomcast_commit_linger_seconds/ {printf "%.1f ms", $2 * 1000}' "$OUT/metrics$i.txt")
	echo "node $i: batches ended by: ${ends:-?}; linger at the end: ${linger:-?}"
done
total=$(sed -n 's/^total_commands_processed:\([0-9]*\).*/\1/p' "$OUT/info-stats.txt")
echo "acked (3 nodes): $acked"
awk -v t="$total" -v a="$acked" 'BEGIN { printf "total_commands_processed %d = %.3f per message acknowledged\n", t, t / a }'
echo "by command (calls per message acknowledged):"
tr -d '\r' <"$OUT/commandstats.txt" | sed -n 's/^cmdstat_\([^:]*\):calls=\([0-9]*\),.*/\1 \2/p' | sort -k2 -n -r |
	awk -v a="$acked" '{ printf "  %-14s %9d  %.4f\n", $1, $2, $2 / a }'
echo "results in $OUT"
exit "$rc"
