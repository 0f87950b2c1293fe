#!/usr/bin/env bash
# Several Odeon hosts on this machine, sharing a Redis presence and MongoDB listings:
# redis-server and SecantusDB (a MongoDB-wire server) on free loopback ports with their data in a
# temporary directory, then N hosts on ports 3001 … 3000+N, and odeon-proxy on 127.0.0.1:8080 in
# front of them: the one address clients use. A host (or the proxy) that dies is reported and
# started again, as PM2 would; the others keep serving. Ctrl-C stops everything it started, by
# PID, and removes the temporary directory.
#
#   scripts/cluster.sh [N]     (`just cluster N` builds the plugins and the host first)
#
# Environment: ODEON_HOST_BIN (default target/debug/odeon-host), ODEON_PROXY_BIN (default
# target/debug/odeon-proxy), ODEON_PLUGINS_DIR (default target/plugins), ODEON_CLUSTER_PORT (first
# host's port, default 3001), ODEON_PROXY_PORT (default 8080), ODEON_REDIS_SERVER
# (default redis-server), SECANTUSD_PY (default secantusd-py on PATH, else the venvs in ~/.cache).
set -euo pipefail

n="${1:-3}"
if ! [[ "$n" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 [N]   (N hosts, default 3)" >&2
    exit 2
fi

root="$(cd "$(dirname "$0")/.." && pwd)"
host_bin="${ODEON_HOST_BIN:-$root/target/debug/odeon-host}"
proxy_bin="${ODEON_PROXY_BIN:-$root/target/debug/odeon-proxy}"
proxy_port="${ODEON_PROXY_PORT:-8080}"
plugins="${ODEON_PLUGINS_DIR:-$root/target/plugins}"
base="${ODEON_CLUSTER_PORT:-3001}"
redis_bin="${ODEON_REDIS_SERVER:-redis-server}"

secantus="${SECANTUSD_PY:-}"
if [ -z "$secantus" ]; then
    for c in "$(command -v secantusd-py || true)" \
        "$HOME/.cache/odeon/secantus-venv/bin/secantusd-py"; do
        if [ -n "$c" ] && [ -x "$c" ]; then secantus="$c"; break; fi
    done
fi
[ -x "$host_bin" ] || { echo "host binary not found: $host_bin (cargo build -p odeon-host)" >&2; exit 1; }
[ -x "$proxy_bin" ] || { echo "proxy binary not found: $proxy_bin (cargo build -p odeon-proxy)" >&2; exit 1; }
[ -d "$plugins" ] || { echo "plugins directory not found: $plugins (just plugins)" >&2; exit 1; }
command -v "$redis_bin" >/dev/null || { echo "$redis_bin not found (apt-get install -y redis-server)" >&2; exit 1; }
[ -n "$secantus" ] || {
    echo "secantusd-py not found: run \`just setup\` (or set SECANTUSD_PY)" >&2
    exit 1
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# True when something accepts a TCP connection on the loopback port.
listening() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
# Wait until `probe ARGS` succeeds while PID lives; fails after SECS seconds or when PID exits.
wait_until() {
    local pid=$1 secs=$2 i
    shift 2
    for ((i = 0; i < secs * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || return 1
        "$@" && return 0
        sleep 0.1
    done
    return 1
}

dir="$(mktemp -d "${TMPDIR:-/tmp}/odeon-cluster.XXXXXX")"
pids=()        # every process this script started, in start order
host_pids=()

# Stop the hosts first (they close their rooms on SIGTERM), then Redis and SecantusDB; SIGKILL
# whatever is still there after 5 s. Only the PIDs started above, never by name.
cleanup() {
    local status=$? i pid
    trap - EXIT
    trap '' INT TERM  # a second Ctrl-C does not cut the clean-up short (it takes at most ~10 s)
    echo
    echo "stopping ${#pids[@]} processes..."
    for pid in "${host_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for ((i = 0; i < 50; i++)); do
        local left=0
        for pid in "${host_pids[@]}"; do kill -0 "$pid" 2>/dev/null && left=1; done
        [ "$left" = 0 ] && break
        sleep 0.1
    done
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM "${pids[i]}" 2>/dev/null || true; done
    for ((i = 0; i < 50; i++)); do
        local left=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && left=1; done
        [ "$left" = 0 ] && break
        sleep 0.1
    done
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
    echo "stopped"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 0' INT   # Ctrl-C is the way to stop the cluster, not a failure
trap 'exit 0' TERM

# Each child in its own session: Ctrl-C reaches only this script, which then stops them in order.
# (setsid does not fork here, so $! is the child's own PID.)
redis_port="$(free_port)"
setsid "$redis_bin" --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
    >"$dir/redis.log" 2>&1 </dev/null &
pids+=($!)
wait_until "$!" 10 listening "$redis_port" || { echo "redis-server did not start:" >&2; tail "$dir/redis.log" >&2; exit 1; }

mongo_port="$(free_port)"
: >"$dir/secantusd.toml"  # an empty config, so none on the machine is read
setsid "$secantus" --config "$dir/secantusd.toml" --host 127.0.0.1 --port "$mongo_port" \
    --storage-path "$dir/mongo" --standalone --sync-on-commit --log-level WARNING \
    >"$dir/mongo.log" 2>&1 </dev/null &
pids+=($!)
wait_until "$!" 30 listening "$mongo_port" || { echo "secantusd-py did not start:" >&2; tail "$dir/mongo.log" >&2; exit 1; }

redis_url="redis://127.0.0.1:$redis_port"
mongo_uri="mongodb://127.0.0.1:$mongo_port/odeon"

healthy() {
    curl -fsS --max-time 1 "http://127.0.0.1:$1/odeon/health" >/dev/null 2>&1
}

# Starts host number $1 (0-based) on its port; its PID goes to host_pids[$1] and pids.
start_host() {
    local i=$1 port=$((base + $1))
    # No NODE_APP_INSTANCE: the host would add it to --port. Behind the proxy, reservations
    # name no address, so clients come back through the proxy.
    env -u NODE_APP_INSTANCE REDIS_URL="$redis_url" MONGO_URI="$mongo_uri" NO_COLOR=1 \
        setsid "$host_bin" --bind 127.0.0.1 --port "$port" --plugins "$plugins" \
        --behind-proxy >>"$dir/host-$port.log" 2>&1 </dev/null &
    host_pids[i]=$!
    pids+=($!)
}

proxy_pid=""
start_proxy() {
    env REDIS_URL="$redis_url" NO_COLOR=1 setsid "$proxy_bin" --bind 127.0.0.1 --port "$proxy_port" \
        >>"$dir/proxy.log" 2>&1 </dev/null &
    proxy_pid=$!
    pids+=($!)
}
# True when the proxy answers its health path and routes to $1 processes.
proxy_routes() {
    local body
    body="$(curl -fsS --max-time 1 "http://127.0.0.1:$proxy_port/health" 2>/dev/null)" || return 1
    [ "$(grep -o '"processes":\[[^]]*\]' <<<"$body" | grep -o '"[A-Za-z0-9_-]*"' | grep -vc processes)" -ge "$1" ]
}

if listening "$proxy_port"; then
    echo "port $proxy_port is already in use (set ODEON_PROXY_PORT to start the proxy elsewhere)" >&2
    exit 1
fi
for ((i = 0; i < n; i++)); do
    port=$((base + i))
    if listening "$port"; then
        echo "port $port is already in use (set ODEON_CLUSTER_PORT to start elsewhere)" >&2
        exit 1
    fi
    start_host "$i"
done
for ((i = 0; i < n; i++)); do
    port=$((base + i))
    if ! wait_until "${host_pids[i]}" 30 healthy "$port"; then
        echo "host on port $port did not answer /odeon/health:" >&2
        tail -n 20 "$dir/host-$port.log" >&2
        exit 1
    fi
done

start_proxy
if ! wait_until "$proxy_pid" 30 proxy_routes "$n"; then
    echo "odeon-proxy on port $proxy_port did not route to the $n hosts:" >&2
    tail -n 20 "$dir/proxy.log" >&2
    exit 1
fi

echo "Odeon cluster: $n hosts, Redis presence, MongoDB listings (data and logs in $dir)"
echo "  redis    $redis_url  pid ${pids[0]}  log $dir/redis.log"
echo "  mongodb  $mongo_uri  pid ${pids[1]}  log $dir/mongo.log"
for ((i = 0; i < n; i++)); do
    port=$((base + i))
    id="$(curl -fsS --max-time 1 "http://127.0.0.1:$port/odeon/health" | sed -n 's/.*"processId":"\([^"]*\)".*/\1/p')"
    echo "  host $((i + 1))   ws://127.0.0.1:$port  processId $id  pid ${host_pids[i]}  log $dir/host-$port.log"
done
echo "  proxy    http://127.0.0.1:$proxy_port  pid $proxy_pid  log $dir/proxy.log"
echo "Clients use the proxy: ws://127.0.0.1:$proxy_port (e.g. new Client(\"ws://127.0.0.1:$proxy_port\"))"
echo "Ctrl-C stops them all."

# Keep watching, as PM2 would: a host that dies is reported and started again on its port
# (after 1 s, doubling up to 30 s while it keeps dying within 10 s of its start); the other
# hosts keep serving. Redis or SecantusDB dying stops the cluster: the hosts cannot serve
# without them.
declare -a started_at backoff
for ((i = 0; i < n; i++)); do started_at[i]=$SECONDS; backoff[i]=1; done
declare -a due
while true; do
    for ((k = 0; k < 2; k++)); do
        if ! kill -0 "${pids[k]}" 2>/dev/null; then
            name=$([ "$k" = 0 ] && echo redis-server || echo secantusd-py)
            echo "$name (pid ${pids[k]}) exited; stopping the cluster" >&2
            tail -n 5 "$dir/$([ "$k" = 0 ] && echo redis || echo mongo).log" >&2
            exit 1
        fi
    done
    if [ -n "${proxy_due:-}" ]; then
        if [ "$SECONDS" -ge "$proxy_due" ]; then
            proxy_due=""
            start_proxy
            echo "proxy restarted: http://127.0.0.1:$proxy_port  pid $proxy_pid"
        fi
    elif ! kill -0 "$proxy_pid" 2>/dev/null; then
        wait "$proxy_pid" 2>/dev/null && status=0 || status=$?
        echo "proxy (pid $proxy_pid) exited with status $status; restarting it in 1 s" >&2
        tail -n 5 "$dir/proxy.log" >&2
        proxy_due=$((SECONDS + 1))
    fi
    for ((i = 0; i < n; i++)); do
        port=$((base + i))
        pid=${host_pids[i]}
        if [ -n "${due[i]:-}" ]; then
            if [ "$SECONDS" -ge "${due[i]}" ]; then
                unset "due[i]"
                start_host "$i"
                started_at[i]=$SECONDS
                echo "host $((i + 1)) restarted: ws://127.0.0.1:$port  pid ${host_pids[i]}"
            fi
        elif ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid" 2>/dev/null && status=0 || status=$?
            if [ $((SECONDS - started_at[i])) -lt 10 ]; then
                backoff[i]=$((backoff[i] * 2 > 30 ? 30 : backoff[i] * 2))
            else
                backoff[i]=1
            fi
            echo "host $((i + 1)) (port $port, pid $pid) exited with status $status; restarting it in ${backoff[i]} s" >&2
            tail -n 5 "$dir/host-$port.log" >&2
            due[i]=$((SECONDS + backoff[i]))
        fi
    done
    sleep 0.5 &
    wait $! || true
done
