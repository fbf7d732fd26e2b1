#!/usr/bin/env bash
# Benchmark handoff against a direct connection, Squid, tinyproxy and mitmproxy.
# Everything runs on 127.0.0.1 with ports picked at run time; see bench/README.md.
#
#   bench/run.sh                      full run (about 5-6 minutes)
#   TARGETS="direct squid" bench/run.sh
#   QUICK=1 bench/run.sh              fewer, shorter runs (a smoke test of the harness)
#
# Environment: HANDOFF (binary, default build/proxy/handoff), OUT (work folder, default a new
# /tmp/handoff-bench.*), TARGETS, BULK_BYTES, BULK_RUNS, BULK_MAX_SECS, RATE_RUNS, RATE_SECS,
# RATE_CONCURRENCY, HOLD_COUNT, NO_INSTALL=1 (never call apt-get).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH="$ROOT/bench"
HANDOFF=${HANDOFF:-$ROOT/build/proxy/handoff}
OUT=${OUT:-$(mktemp -d /tmp/handoff-bench.XXXXXX)}
mkdir -p "$OUT"
chmod 755 "$OUT"

TARGETS=${TARGETS:-direct handoff handoff-blind squid tinyproxy mitmproxy}
if [[ -n ${QUICK:-} ]]; then
    : "${BULK_BYTES:=268435456}" "${BULK_RUNS:=1}" "${RATE_RUNS:=1}" "${RATE_SECS:=2}"
    : "${HOLD_COUNT:=500}"
fi
BULK_BYTES=${BULK_BYTES:-1073741824}
BULK_RUNS=${BULK_RUNS:-5}
BULK_MAX_SECS=${BULK_MAX_SECS:-5}
RATE_RUNS=${RATE_RUNS:-3}
RATE_SECS=${RATE_SECS:-10}
RATE_CONCURRENCY=${RATE_CONCURRENCY:-64}
RATE_BYTES=${RATE_BYTES:-100}
HOLD_COUNT=${HOLD_COUNT:-5000}
HOLD_SETTLE_SECS=3 # longer than handoff's detect_timeout_ms (2 s) so idle tunnels are settled

RAW="$OUT/raw.log"
: >"$RAW"
log() { printf '%s\n' "$*" | tee -a "$RAW" >&2; }

# ---- processes we start, and only those, are stopped at exit ----
STARTED_PIDS=()
stop_pid() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local pid
    for pid in "${STARTED_PIDS[@]}"; do
        stop_pid "$pid"
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- prerequisites ----
install_missing() {
    local need=() pkg
    command -v squid >/dev/null || need+=(squid-openssl)
    command -v tinyproxy >/dev/null || need+=(tinyproxy)
    command -v mitmdump >/dev/null || need+=(mitmproxy)
    ((${#need[@]})) || return 0
    if [[ -n ${NO_INSTALL:-} || $(id -u) -ne 0 ]]; then
        log "missing: ${need[*]} (not installing); those rows will say so"
        return 0
    fi
    # A package's postinst may start its system service; stop only a service that install started.
    local was_active=()
    for pkg in squid tinyproxy; do
        if command -v systemctl >/dev/null && systemctl is-active --quiet "$pkg" 2>/dev/null; then
            was_active+=("$pkg")
        fi
    done
    log "installing: ${need[*]}"
    apt-get update -qq >>"$OUT/apt.log" 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >>"$OUT/apt.log" 2>&1 ||
        log "apt-get install failed, see $OUT/apt.log"
    for pkg in squid tinyproxy; do
        if [[ " ${was_active[*]} " == *" $pkg "* ]]; then
            continue
        fi
        if command -v systemctl >/dev/null && systemctl is-active --quiet "$pkg" 2>/dev/null; then
            log "stopping the $pkg service that the package install started"
            systemctl stop "$pkg" || true
        fi
    done
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_listening() { # port timeout_secs pid
    local port=$1 deadline=$((SECONDS + $2)) pid=$3
    while ((SECONDS < deadline)); do
        kill -0 "$pid" 2>/dev/null || return 1
        [[ -n $(ss -Hltn "sport = :$port" 2>/dev/null) ]] && return 0
        sleep 0.1
    done
    return 1
}

descendants() {
    local child
    for child in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
        echo "$child"
        descendants "$child"
    done
}

# Resident memory of a process and its children (Squid helpers, worker processes), in KiB.
tree_rss_kib() {
    local total=0 pid rss
    for pid in "$1" $(descendants "$1"); do
        rss=$(awk '/^VmRSS:/ { print $2 }' /proc/"$pid"/status 2>/dev/null || true)
        total=$((total + ${rss:-0}))
    done
    echo "$total"
}

median() {
    (($#)) || { echo "" && return 0; }
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "" } else if (NR % 2) { print v[(NR + 1) / 2] }
        else { printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 } }'
}

field() { # key line -> value of key=value
    sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2"
}

# ---- proxies: each start_* sets PROXY_PID and PROXY_PORT or returns non-zero with SKIP_REASON ----
PROXY_PID=
PROXY_PORT=
SKIP_REASON=

launch() { # dir cmd... : start in the background, remember the PID
    local dir=$1
    shift
    "$@" >"$dir/stdout.log" 2>"$dir/stderr.log" &
    PROXY_PID=$!
    STARTED_PIDS+=("$PROXY_PID")
}

write_handoff_conf() { # dir port detection(yes|no)
    local dir=$1 port=$2 detection=$3 tls=
    printf '<proxy>\n    ALLOW\n' >"$dir/policy.cpl"
    if [[ -f $dir/ca/ca.crt ]] || "$HANDOFF" ca init "$dir/ca" >"$dir/ca-init.log" 2>&1; then
        tls=$'[tls]\nca_cert = ca/ca.crt\nca_key = ca/ca.key\n'
    else
        log "handoff ca init failed (see $dir/ca-init.log); running without [tls]"
    fi
    cat >"$dir/handoff.conf" <<EOF
[proxy]
listen = 127.0.0.1:$port
workers = auto
protocol_detection = $detection

$tls
[policy]
file = policy.cpl
default = allow

[admin]
listen =

[log]
access_log = off
level = error
EOF
}

start_handoff_common() { # dir detection
    local dir=$1
    if [[ ! -x $HANDOFF ]]; then
        SKIP_REASON="no binary at $HANDOFF"
        return 1
    fi
    PROXY_PORT=$(free_port)
    write_handoff_conf "$dir" "$PROXY_PORT" "$2"
    if ! "$HANDOFF" -c "$dir/handoff.conf" --check >"$dir/check.log" 2>&1; then
        SKIP_REASON="config rejected: $(head -1 "$dir/check.log")"
        return 1
    fi
    launch "$dir" "$HANDOFF" -c "$dir/handoff.conf"
}
start_handoff() { start_handoff_common "$1" yes; }
start_handoff-blind() { start_handoff_common "$1" no; }

start_squid() {
    local dir=$1
    command -v squid >/dev/null || { SKIP_REASON="squid not installed" && return 1; }
    chmod 777 "$dir" # Squid drops to the proxy user and still writes its log and pid here
    PROXY_PORT=$(free_port)
    sed "s|@PORT@|$PROXY_PORT|g; s|@DIR@|$dir|g" "$BENCH/configs/squid.conf" >"$dir/squid.conf"
    launch "$dir" squid -N -f "$dir/squid.conf"
}

start_tinyproxy() {
    local dir=$1
    command -v tinyproxy >/dev/null || { SKIP_REASON="tinyproxy not installed" && return 1; }
    chmod 777 "$dir" # tinyproxy runs as nobody and writes its log here
    PROXY_PORT=$(free_port)
    sed "s|@PORT@|$PROXY_PORT|g; s|@DIR@|$dir|g" "$BENCH/configs/tinyproxy.conf" >"$dir/tinyproxy.conf"
    launch "$dir" tinyproxy -d -c "$dir/tinyproxy.conf"
}

start_mitmproxy() {
    local dir=$1
    command -v mitmdump >/dev/null || { SKIP_REASON="mitmproxy not installed" && return 1; }
    PROXY_PORT=$(free_port)
    launch "$dir" "$BENCH/configs/mitmproxy.sh" "$PROXY_PORT" "$dir/confdir"
}

# ---- measurements ----
declare -A BULK RATE MEM NOTE ARGS PID_OF BULK_VALUES RATE_VALUES

measure_memory() { # name proxy_args...
    local name=$1
    shift
    local before after established lost line hold_pid i
    before=$(tree_rss_kib "$PROXY_PID")
    "$LOADGEN" hold "$@" --count "$HOLD_COUNT" --secs 120 >"$OUT/$name/hold.log" 2>&1 &
    hold_pid=$!
    STARTED_PIDS+=("$hold_pid")
    for i in $(seq 600); do
        grep -q '^ready' "$OUT/$name/hold.log" && break
        kill -0 "$hold_pid" 2>/dev/null || break
        sleep 0.1
    done
    sleep "$HOLD_SETTLE_SECS"
    after=$(tree_rss_kib "$PROXY_PID")
    stop_pid "$hold_pid"
    line=$(grep '^ready' "$OUT/$name/hold.log" || true)
    established=$(field established "$line")
    lost=$(field lost "$(grep '^end' "$OUT/$name/hold.log" || true)")
    log "$name: hold $line; lost while idle=${lost:-?}; rss before=${before} KiB after=${after} KiB"
    if [[ -n $established && $established -gt 0 ]]; then
        MEM[$name]=$(awk -v a="$after" -v b="$before" -v n="$established" \
            'BEGIN { printf "%.1f", (a - b) / n }')
        if ((established < HOLD_COUNT)); then
            NOTE[$name]+="only $established of $HOLD_COUNT tunnels opened; "
        fi
        if [[ -n ${lost:-} && $lost -gt 0 ]]; then
            NOTE[$name]+="$lost idle tunnels closed by the proxy; "
        fi
    else
        NOTE[$name]+="idle tunnels failed; "
    fi
    sleep 1 # let the proxy tear the held tunnels down before timing anything
}

# One bulk run of one target; the figure is appended to BULK_VALUES[name].
bulk_once() { # name round
    local name=$1 round=$2 line args
    read -ra args <<<"${ARGS[$name]}"
    line=$(timeout 60 "$LOADGEN" bulk "${args[@]}" --bytes "$BULK_BYTES" \
        --max-secs "$BULK_MAX_SECS" 2>&1 | tail -1) || true
    log "$name: bulk $round/$BULK_RUNS: $line"
    if [[ $line == bulk* ]]; then
        BULK_VALUES[$name]+=" $(field mbps "$line")"
    fi
    if [[ $line == *cut_short* && ${NOTE[$name]:-} != *capped* ]]; then
        NOTE[$name]+="bulk runs capped at ${BULK_MAX_SECS}s; "
    fi
}

# One tunnel-rate run of one target; the figure is appended to RATE_VALUES[name].
rate_once() { # name round
    local name=$1 round=$2 line errors args
    read -ra args <<<"${ARGS[$name]}"
    line=$(timeout $((RATE_SECS + 30)) "$LOADGEN" rate "${args[@]}" \
        --concurrency "$RATE_CONCURRENCY" --secs "$RATE_SECS" --bytes "$RATE_BYTES" 2>&1 |
        tail -1) || true
    log "$name: rate $round/$RATE_RUNS: $line"
    if [[ $line == rate* ]]; then
        RATE_VALUES[$name]+=" $(field per_sec "$line")"
        errors=$(field errors "$line")
        if ((errors > 0)); then
            NOTE[$name]+="$errors failed tunnels in rate run $round; "
        fi
    fi
}

# Starts the target's proxy (left running for the timed runs) and measures its idle tunnels.
prepare_target() {
    local name=$1 dir="$OUT/$1"
    mkdir -p "$dir"
    if [[ $name == direct ]]; then
        ARGS[$name]="--origin 127.0.0.1:$ORIGIN_PORT"
        return 0
    fi
    SKIP_REASON=
    if ! "start_$name" "$dir"; then
        NOTE[$name]="skipped: $SKIP_REASON"
        log "$name: skipped: $SKIP_REASON"
        return 0
    fi
    if ! wait_listening "$PROXY_PORT" 60 "$PROXY_PID"; then
        NOTE[$name]="did not start, see $dir/stderr.log"
        log "$name: did not start: $(tail -3 "$dir/stderr.log" "$dir/stdout.log" 2>/dev/null)"
        stop_pid "$PROXY_PID"
        return 0
    fi
    ARGS[$name]="--proxy 127.0.0.1:$PROXY_PORT --origin 127.0.0.1:$ORIGIN_PORT"
    PID_OF[$name]=$PROXY_PID
    log "$name: listening on 127.0.0.1:$PROXY_PORT (pid $PROXY_PID)"
    # Warm-up: first-use allocations and lazy imports should not count as per-tunnel memory.
    "$LOADGEN" rate --proxy "127.0.0.1:$PROXY_PORT" --origin "127.0.0.1:$ORIGIN_PORT" \
        --concurrency 4 --secs 1 >>"$dir/warmup.log" 2>&1 || true
    sleep 0.5
    measure_memory "$name" --proxy "127.0.0.1:$PROXY_PORT" --origin "127.0.0.1:$ORIGIN_PORT"
}

# A target is still measurable while its proxy runs; a proxy that died is noted once.
alive() {
    local name=$1 pid=${PID_OF[$1]:-}
    [[ -n ${ARGS[$name]:-} ]] || return 1
    [[ -z $pid ]] && return 0
    kill -0 "$pid" 2>/dev/null && return 0
    NOTE[$name]+="proxy exited during the run (see $OUT/$name/stderr.log); "
    unset "ARGS[$name]"
    return 1
}

ratio() { # value reference
    [[ -n $1 && -n $2 ]] || { echo "–" && return; }
    awk -v v="$1" -v r="$2" 'BEGIN { if (r > 0) printf "%.2f", v / r; else print "–" }'
}

print_table() {
    local name d_bulk=${BULK[direct]:-} d_rate=${RATE[direct]:-}
    echo "| target | bulk MB/s (median of $BULK_RUNS) | vs direct | tunnels/s (median of $RATE_RUNS) | vs direct | KiB per idle tunnel | notes |"
    echo "|---|---:|---:|---:|---:|---:|---|"
    for name in $TARGETS; do
        local mem=${MEM[$name]:-–}
        [[ $name == direct ]] && mem="n/a"
        local note=${NOTE[$name]:-}
        echo "| $name | ${BULK[$name]:-–} | $(ratio "${BULK[$name]:-}" "$d_bulk") | ${RATE[$name]:-–} | $(ratio "${RATE[$name]:-}" "$d_rate") | $mem | ${note%; } |"
    done
}

# ---- main ----
if ! ulimit -n 20000 2>/dev/null; then
    ulimit -n "$(ulimit -Hn)"
fi
fd_limit=$(ulimit -n)
if ((HOLD_COUNT * 2 + 256 > fd_limit)); then
    HOLD_COUNT=$(((fd_limit - 256) / 2))
    log "open-file limit $fd_limit: idle-tunnel test lowered to $HOLD_COUNT tunnels"
fi

install_missing

LOADGEN="$OUT/loadgen"
cc -O2 -Wall -Wextra -Werror "$BENCH/loadgen.c" -o "$LOADGEN"
cc -O2 -Wall -Wextra -Werror "$BENCH/sink.c" -o "$OUT/sink"

"$OUT/sink" >"$OUT/sink.log" 2>&1 &
SINK_PID=$!
STARTED_PIDS+=("$SINK_PID")
for _ in $(seq 50); do
    grep -q '^port' "$OUT/sink.log" && break
    sleep 0.1
done
ORIGIN_PORT=$(awk '/^port/ { print $2 }' "$OUT/sink.log")
[[ -n $ORIGIN_PORT ]] || { log "origin did not start" && exit 1; }

log "bench: out=$OUT origin=127.0.0.1:$ORIGIN_PORT targets: $TARGETS"
log "bench: bulk ${BULK_RUNS}x $BULK_BYTES bytes (cap ${BULK_MAX_SECS}s), rate ${RATE_RUNS}x ${RATE_SECS}s at $RATE_CONCURRENCY clients, $HOLD_COUNT idle tunnels"
started=$SECONDS
for name in $TARGETS; do
    prepare_target "$name"
done
# Rounds go across targets, so a burst of other load on the machine hits every target alike.
for round in $(seq "$BULK_RUNS"); do
    for name in $TARGETS; do
        if alive "$name"; then bulk_once "$name" "$round"; fi
    done
done
for round in $(seq "$RATE_RUNS"); do
    for name in $TARGETS; do
        if alive "$name"; then rate_once "$name" "$round"; fi
    done
done
for name in $TARGETS; do
    alive "$name" || true
    [[ -n ${PID_OF[$name]:-} ]] && stop_pid "${PID_OF[$name]}"
    read -ra values <<<"${BULK_VALUES[$name]:-}"
    BULK[$name]=$(median "${values[@]}")
    if [[ -n ${PID_OF[$name]:-} || $name == direct ]] && ((${#values[@]} < BULK_RUNS)); then
        NOTE[$name]+="$((BULK_RUNS - ${#values[@]})) bulk runs failed; "
    fi
    read -ra values <<<"${RATE_VALUES[$name]:-}"
    RATE[$name]=$(median "${values[@]}")
done

{
    echo "## handoff benchmark ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -r))"
    echo
    print_table
    echo
    echo "Versions: $( (squid -v 2>/dev/null || true) | head -1); $( (tinyproxy -v 2>/dev/null || true) | head -1);" \
        "mitmproxy $( (mitmdump --version 2>/dev/null || true) | sed -n 's/^Mitmproxy: *//p')." \
        "Raw figures: $RAW. Took $((SECONDS - started)) s."
} | tee "$OUT/results.md"
