#!/usr/bin/env bash
# A local 3-shard Redis Cluster on loopback ports, for roomcast's cluster
# tests and benchmarks (issue 5). Three masters, no replicas, nothing kept on
# disk beyond DIR.
#
#   scripts/redis-cluster.sh start DIR [PORT1 PORT2 PORT3]   (default 7001 7002 7003)
#   scripts/redis-cluster.sh stop DIR
#
# start prints the seed list for --redis (127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3)
# once every node reports cluster_state:ok.
set -euo pipefail

cmd="${1:-}"
dir="${2:-}"
if [ -z "$cmd" ] || [ -z "$dir" ]; then
  echo "usage: $0 start DIR [PORT1 PORT2 PORT3] | stop DIR" >&2
  exit 2
fi

stop() {
  local pf pid
  for pf in "$dir"/*/redis.pid; do
    [ -f "$pf" ] || continue
    pid=$(cat "$pf")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pf"
  done
}

case "$cmd" in
stop)
  stop
  exit 0
  ;;
start)
  ports=("${3:-7001}" "${4:-7002}" "${5:-7003}")
  mkdir -p "$dir"
  seeds=()
  for p in "${ports[@]}"; do
    mkdir -p "$dir/$p"
    rm -f "$dir/$p/nodes.conf"
    redis-server --port "$p" --bind 127.0.0.1 --daemonize yes --dir "$dir/$p" \
      --pidfile "$dir/$p/redis.pid" --logfile "$dir/$p/redis.log" \
      --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 5000 \
      --save "" --appendonly no
    seeds+=("127.0.0.1:$p")
  done
  for p in "${ports[@]}"; do
    for _ in $(seq 1 100); do redis-cli -p "$p" ping >/dev/null 2>&1 && break; sleep 0.05; done
  done
  if ! redis-cli --cluster create "${seeds[@]}" --cluster-replicas 0 --cluster-yes >"$dir/create.log" 2>&1; then
    cat "$dir/create.log" >&2
    stop
    exit 1
  fi
  for p in "${ports[@]}"; do
    ok=""
    for _ in $(seq 1 200); do
      if redis-cli -p "$p" cluster info 2>/dev/null | grep -q 'cluster_state:ok'; then ok=1; break; fi
      sleep 0.05
    done
    if [ -z "$ok" ]; then
      echo "redis-cluster: node $p never reached cluster_state:ok" >&2
      stop
      exit 1
    fi
  done
  (IFS=,; echo "${seeds[*]}")
  ;;
*)
  echo "usage: $0 start DIR [PORT1 PORT2 PORT3] | stop DIR" >&2
  exit 2
  ;;
esac
