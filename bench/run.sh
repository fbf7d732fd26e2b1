#!/usr/bin/env bash
# Benchmark handoff against a direct connection, HAProxy, Squid, tinyproxy and mitmproxy, in
# three parts:
#   tunnel  CONNECT tunnels (bulk, tunnel rate, idle memory) and the cost of protocol detection
#   tls     TLS interception against Squid's ssl-bump and mitmproxy (new connections, keep-alive,
#           leaf minting)
#   floor   proxy CPU per unit of work and memory per idle connection against HAProxy doing the
#           same work with nothing extra (the floor), and Squid (bench/floor.sh)
# Everything runs on 127.0.0.1 with ports picked at run time; see bench/README.md.
#
#   bench/run.sh                      all three parts (about 15 minutes)
#   PART=tunnel bench/run.sh          only the first part (about 5 minutes)
#   PART=tls bench/run.sh             only the TLS part (about 4 minutes)
#   PART=floor bench/run.sh           only the floor part (about 6 minutes)
#   TARGETS="direct squid" bench/run.sh
#   QUICK=1 bench/run.sh              fewer, shorter runs (a smoke test of the harness)
#
# Environment: HANDOFF (binary, default build/proxy/handoff), OUT (work folder, default a new
# /tmp/handoff-bench.*), PART (tunnel, tls or all), NO_INSTALL=1 (never call apt-get).
# Tunnel part: TARGETS, BULK_BYTES, BULK_RUNS, BULK_MAX_SECS, RATE_RUNS, RATE_SECS,
# RATE_CONCURRENCY, HOLD_COUNT, RAW_RUNS, RAW_SECS.
# TLS part: TLS_TARGETS, TLS_RUNS, TLS_SECS, TLS_CONCURRENCY, TLS_BYTES, MINT_RUNS, MINT_NAMES,
# MINT_MAX_SECS, MITM_DEFAULT_CA=1 (let mitmproxy make its own RSA CA).
# Floor part: FLOOR_TARGETS, HANDOFF_BEFORE (an older binary, adds a "handoff before" column),
# FLOOR_RUNS, FLOOR_SECS, FLOOR_HOLD, BURST_COUNT, BURST_SETTLE_SECS, FLOOR_PERF=0 (no perf).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH="$ROOT/bench"
HANDOFF=${HANDOFF:-$ROOT/build/proxy/handoff}
OUT=${OUT:-$(mktemp -d /tmp/handoff-bench.XXXXXX)}
mkdir -p "$OUT"
chmod 755 "$OUT"

PART=${PART:-all}
case $PART in
tunnel | tls | floor | all) ;;
*) echo "PART must be tunnel, tls, floor or all" >&2 && exit 2 ;;
esac
TARGETS=${TARGETS:-direct handoff handoff-blind squid tinyproxy mitmproxy}
TLS_TARGETS=${TLS_TARGETS:-handoff squid-bump mitmproxy-bump}
if [[ -n ${QUICK:-} ]]; then
    : "${BULK_BYTES:=268435456}" "${BULK_RUNS:=1}" "${RATE_RUNS:=1}" "${RATE_SECS:=2}"
    : "${HOLD_COUNT:=500}" "${RAW_RUNS:=1}" "${RAW_SECS:=2}"
    : "${TLS_RUNS:=1}" "${TLS_SECS:=2}" "${MINT_RUNS:=1}" "${MINT_NAMES:=200}"
    : "${FLOOR_RUNS:=1}" "${FLOOR_SECS:=2}" "${FLOOR_HOLD:=500}" "${BURST_COUNT:=1000}"
    : "${BURST_SETTLE_SECS:=3}"
fi
BULK_BYTES=${BULK_BYTES:-1073741824}
BULK_RUNS=${BULK_RUNS:-3}
BULK_MAX_SECS=${BULK_MAX_SECS:-5}
RATE_RUNS=${RATE_RUNS:-3}
RATE_SECS=${RATE_SECS:-5}
RATE_CONCURRENCY=${RATE_CONCURRENCY:-64}
RATE_BYTES=${RATE_BYTES:-100}
HOLD_COUNT=${HOLD_COUNT:-5000}
HOLD_SETTLE_SECS=3 # longer than handoff's detect_timeout_ms (2 s) so idle tunnels are settled
RAW_RUNS=${RAW_RUNS:-5}
RAW_SECS=${RAW_SECS:-5}
TLS_RUNS=${TLS_RUNS:-3}
TLS_SECS=${TLS_SECS:-5}
TLS_CONCURRENCY=${TLS_CONCURRENCY:-64}
TLS_BYTES=${TLS_BYTES:-100}
MINT_RUNS=${MINT_RUNS:-2}
MINT_NAMES=${MINT_NAMES:-2000}
MINT_MAX_SECS=${MINT_MAX_SECS:-90}

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
    command -v haproxy >/dev/null || need+=(haproxy)
    if [[ $PART != tunnel ]]; then
        command -v nginx >/dev/null || need+=(nginx-light)
        command -v openssl >/dev/null || need+=(openssl)
    fi
    ((${#need[@]})) || return 0
    if [[ -n ${NO_INSTALL:-} || $(id -u) -ne 0 ]]; then
        log "missing: ${need[*]} (not installing); those rows will say so"
        return 0
    fi
    # A package's postinst may start its system service; stop only a service that install started.
    local was_active=()
    for pkg in squid tinyproxy nginx; do
        if command -v systemctl >/dev/null && systemctl is-active --quiet "$pkg" 2>/dev/null; then
            was_active+=("$pkg")
        fi
    done
    log "installing: ${need[*]}"
    apt-get update -qq >>"$OUT/apt.log" 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >>"$OUT/apt.log" 2>&1 ||
        log "apt-get install failed, see $OUT/apt.log"
    for pkg in squid tinyproxy nginx; do
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

# A process and its descendants as loadgen's --cpu-pids list.
pid_list() {
    { echo "$1" && descendants "$1"; } | paste -sd, -
}

# Runs loadgen once; every line it printed goes to raw.log under `label`, and its result line
# (the one starting with the mode) is left in LOADGEN_LINE.
LOADGEN_LINE=
loadgen_run() { # label timeout_secs loadgen-args...
    local label=$1 limit=$2 output line
    shift 2
    output=$(timeout "$limit" "$LOADGEN" "$@" 2>&1) || true
    LOADGEN_LINE=$(grep -E "^$1 done=" <<<"$output" | tail -1 || true)
    while IFS= read -r line; do
        [[ -n $line ]] && log "$label: $line"
    done <<<"${output:-no output (timed out?)}"
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

# ---- tunnel part, detection cost: detection on versus off with a request no matcher knows ----
declare -A RAW_VALUES RAW_CPU

# One run of `rate --raw` (classified `tcp`, so both configurations tunnel it blindly).
raw_once() { # name round
    local name=$1 round=$2 args errors
    read -ra args <<<"${ARGS[$name]}"
    loadgen_run "$name: raw $round/$RAW_RUNS" $((RAW_SECS + 30)) rate --raw "${args[@]}" \
        --concurrency "$RATE_CONCURRENCY" --secs "$RAW_SECS" --bytes "$RATE_BYTES" \
        --cpu-pids "$(pid_list "${PID_OF[$name]}")"
    [[ -n $LOADGEN_LINE ]] || return 0
    RAW_VALUES[$name]+=" $(field per_sec "$LOADGEN_LINE")"
    RAW_CPU[$name]+=" $(field cpu_us_per_op "$LOADGEN_LINE")"
    errors=$(field errors "$LOADGEN_LINE")
    if ((errors > 0)); then
        NOTE[$name]+="$errors failed raw tunnels in run $round; "
    fi
}

# Alternates handoff and handoff-blind, swapping which goes first every round.
measure_detection_cost() {
    local round pair
    for round in $(seq "$RAW_RUNS"); do
        pair="handoff handoff-blind"
        ((round % 2)) || pair="handoff-blind handoff"
        for name in $pair; do
            if alive "$name"; then raw_once "$name" "$round"; fi
        done
    done
}

drop_pct() { # value reference -> how far value is below reference, in % of the reference
    [[ -n $1 && -n $2 ]] || { echo "–" && return; }
    awk -v v="$1" -v r="$2" 'BEGIN { if (r > 0) printf "%.1f %%", (r - v) * 100 / r; else print "–" }'
}

rise_pct() { # value reference -> how far value is above reference, in % of the reference
    [[ -n $1 && -n $2 ]] || { echo "–" && return; }
    awk -v v="$1" -v r="$2" 'BEGIN { if (r > 0) printf "%.1f %%", (v - r) * 100 / r; else print "–" }'
}

print_detection_table() {
    local on=handoff off=handoff-blind values on_rate off_rate on_cpu off_cpu
    read -ra values <<<"${RAW_VALUES[$on]:-}"
    on_rate=$(median "${values[@]}")
    read -ra values <<<"${RAW_VALUES[$off]:-}"
    off_rate=$(median "${values[@]}")
    read -ra values <<<"${RAW_CPU[$on]:-}"
    on_cpu=$(median "${values[@]}")
    read -ra values <<<"${RAW_CPU[$off]:-}"
    off_cpu=$(median "${values[@]}")
    echo "Detection cost: new tunnels/s carrying a request no matcher recognises (\`rate --raw\`," \
        "classified \`tcp\` and tunnelled blindly either way), $RATE_CONCURRENCY clients," \
        "${RAW_SECS} s runs, handoff and handoff-blind alternating; target: under 5 %."
    echo
    echo "| target | tunnels/s (median of $RAW_RUNS) | proxy CPU µs per tunnel (median of $RAW_RUNS) |"
    echo "|---|---:|---:|"
    echo "| handoff (detection on) | ${on_rate:-–} | ${on_cpu:-–} |"
    echo "| handoff-blind (detection off) | ${off_rate:-–} | ${off_cpu:-–} |"
    echo "| detection cost: tunnels/s lost, CPU per tunnel added (negative: on measured better) |" \
        "$(drop_pct "$on_rate" "$off_rate") | $(rise_pct "$on_cpu" "$off_cpu") |"
    echo
    echo "Run-to-run spread (lowest–highest): handoff $(spread "${RAW_VALUES[$on]:-}") tunnels/s," \
        "$(spread "${RAW_CPU[$on]:-}") µs; handoff-blind $(spread "${RAW_VALUES[$off]:-}") tunnels/s," \
        "$(spread "${RAW_CPU[$off]:-}") µs."
}

spread() { # "v1 v2 ..." -> "lowest–highest"
    local values
    read -ra values <<<"${1:-}"
    ((${#values[@]})) || { echo "–" && return; }
    printf '%s\n' "${values[@]}" | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { print lo "–" hi }'
}

tunnel_part() {
    local started=$SECONDS name round values
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
    log "bench: bulk ${BULK_RUNS}x $BULK_BYTES bytes (cap ${BULK_MAX_SECS}s), rate ${RATE_RUNS}x ${RATE_SECS}s at $RATE_CONCURRENCY clients, $HOLD_COUNT idle tunnels, raw ${RAW_RUNS}x ${RAW_SECS}s"
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
    local detection=
    if [[ " $TARGETS " == *" handoff "* && " $TARGETS " == *" handoff-blind "* ]]; then
        detection=yes
        measure_detection_cost
    fi
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
    stop_pid "$SINK_PID"

    {
        echo "## handoff benchmark: CONNECT tunnels ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -r))"
        echo
        print_table
        echo
        if [[ -n $detection ]]; then
            print_detection_table
            echo
        fi
        echo "Versions: $( (squid -v 2>/dev/null || true) | head -1); $( (tinyproxy -v 2>/dev/null || true) | head -1);" \
            "mitmproxy $( (mitmdump --version 2>/dev/null || true) | sed -n 's/^Mitmproxy: *//p')." \
            "Raw figures: $RAW. Took $((SECONDS - started)) s."
        echo
    } | tee -a "$OUT/results.md"
}

# ---- TLS part: interception by handoff, Squid's ssl-bump and mitmproxy ----
TLS_DIR="$OUT/tls"
declare -A TLS_ARGS TLS_PID ADMIN_OF TLS_NOTE TR_VALUES TR_CPU TK_VALUES TK_CPU MINT_VALUES MINT_CPU
PLAIN_VALUES=
PLAIN_CPU=
DIRECT_PLAIN=
DIRECT_TLS=
DIRECT_RATE=

# The bench's own CA, the origin's certificates it signs, and the CA Squid and mitmproxy mint
# with; all ECDSA P-256 like handoff's `ca init`, so every proxy presents the same kind of leaf.
make_tls_material() {
    local d=$TLS_DIR
    mkdir -p "$d/names" "$d/www" "$d/tmp"
    ec_ca() { # key cert subject
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1" \
            -out "$2" -days 30 -subj "$3" -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" >>"$d/openssl.log" 2>&1
    }
    ec_ca "$d/benchca.key" "$d/benchca.crt" "/CN=handoff bench origin CA"
    ec_ca "$d/intercept-ca.key" "$d/intercept-ca.crt" "/CN=handoff bench interception CA"
    cat "$d/intercept-ca.crt" "$d/intercept-ca.key" >"$d/intercept-ca.pem"
    chmod 600 "$d/intercept-ca.pem"
    # Squid reads the CA again as its own user when it (re)starts its listeners.
    chgrp proxy "$d/intercept-ca.pem" 2>/dev/null && chmod 640 "$d/intercept-ca.pem"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/origin.key" \
        >>"$d/openssl.log" 2>&1
    chmod 644 "$d/origin.key" # nginx's worker, running as nobody, loads the per-name keys too
    # One openssl run per certificate, one per core at a time: about 12 s for 2,000 names.
    local sign=(openssl req -new -x509 -key "$d/origin.key" -CA "$d/benchca.crt"
        -CAkey "$d/benchca.key" -days 30 -addext "basicConstraints=critical,CA:FALSE"
        -addext "extendedKeyUsage=serverAuth")
    "${sign[@]}" -subj /CN=bench.test -addext "subjectAltName=DNS:bench.test,DNS:*.bench.test,IP:127.0.0.1" \
        -out "$d/origin.crt" 2>>"$d/openssl.log"
    seq 0 $((MINT_NAMES - 1)) | xargs -P "$(nproc)" -I{} "${sign[@]}" -subj /CN=n{}.bench.test \
        -addext subjectAltName=DNS:n{}.bench.test -out "$d/names/n{}.bench.test.crt" 2>>"$d/openssl.log"
    head -c "$TLS_BYTES" /dev/zero | tr '\0' x >"$d/www/$TLS_BYTES"
    local made
    made=$(find "$d/names" -name '*.crt' | wc -l)
    ((made == MINT_NAMES)) || { log "tls: only $made of $MINT_NAMES origin certificates made" && return 1; }
}

start_origin() {
    local d=$TLS_DIR i
    TLS_PORT=$(free_port)
    PLAIN_PORT=$(free_port)
    MINT_PORT=$(free_port)
    for ((i = 0; i < MINT_NAMES; i++)); do
        printf 'server {\n    listen 127.0.0.1:%s ssl;\n    server_name n%d.bench.test;\n' "$MINT_PORT" "$i"
        printf '    ssl_certificate %s/names/n%d.bench.test.crt;\n' "$d" "$i"
        printf '    ssl_certificate_key %s/origin.key;\n}\n' "$d"
    done >"$d/mint-servers.conf"
    sed "s|@DIR@|$d|g; s|@TLS_PORT@|$TLS_PORT|g; s|@PLAIN_PORT@|$PLAIN_PORT|g; s|@MINT_PORT@|$MINT_PORT|g" \
        "$BENCH/configs/nginx-origin.conf" >"$d/nginx.conf"
    chmod 777 "$d/tmp"
    nginx -p "$d" -c "$d/nginx.conf" -e "$d/error.log" >"$d/nginx.out" 2>&1 &
    ORIGIN_PID=$!
    STARTED_PIDS+=("$ORIGIN_PID")
    wait_listening "$TLS_PORT" 60 "$ORIGIN_PID" && wait_listening "$PLAIN_PORT" 10 "$ORIGIN_PID" &&
        wait_listening "$MINT_PORT" 10 "$ORIGIN_PID"
}

write_handoff_tls_conf() { # dir port admin_port
    local dir=$1
    printf '<ssl-intercept>\n    ssl.forward_proxy(https)\n\n<proxy>\n    ALLOW\n' >"$dir/policy.cpl"
    cat >"$dir/handoff.conf" <<CONF
[proxy]
listen = 127.0.0.1:$2
workers = auto

[tls]
ca_cert = ca/ca.crt
ca_key = ca/ca.key
upstream_ca_file = $TLS_DIR/benchca.crt
verify_upstream = yes

[policy]
file = policy.cpl
default = allow

[admin]
listen = 127.0.0.1:$3

[log]
access_log = off
level = error
CONF
}

start_tls_handoff() {
    local dir=$1
    [[ -x $HANDOFF ]] || { SKIP_REASON="no binary at $HANDOFF" && return 1; }
    if ! "$HANDOFF" ca init "$dir/ca" >"$dir/ca-init.log" 2>&1; then
        SKIP_REASON="handoff ca init failed, see $dir/ca-init.log"
        return 1
    fi
    PROXY_PORT=$(free_port)
    ADMIN_OF[handoff]=$(free_port)
    write_handoff_tls_conf "$dir" "$PROXY_PORT" "${ADMIN_OF[handoff]}"
    if ! "$HANDOFF" -c "$dir/handoff.conf" --check >"$dir/check.log" 2>&1; then
        SKIP_REASON="config rejected: $(head -1 "$dir/check.log")"
        return 1
    fi
    launch "$dir" "$HANDOFF" -c "$dir/handoff.conf"
}

start_tls_squid-bump() {
    local dir=$1
    command -v squid >/dev/null || { SKIP_REASON="squid not installed" && return 1; }
    squid -v 2>/dev/null | grep -q -- '--with-openssl' ||
        { SKIP_REASON="this squid has no TLS support (install squid-openssl)" && return 1; }
    chmod 777 "$dir"
    /usr/lib/squid/security_file_certgen -c -s "$dir/ssl_db" -M 16MB >"$dir/ssl_db.log" 2>&1 ||
        { SKIP_REASON="security_file_certgen -c failed, see $dir/ssl_db.log" && return 1; }
    chown -R proxy:proxy "$dir/ssl_db" 2>/dev/null || true
    PROXY_PORT=$(free_port)
    sed "s|@PORT@|$PROXY_PORT|g; s|@DIR@|$dir|g; s|@CA_PEM@|$TLS_DIR/intercept-ca.pem|g; s|@ORIGIN_CA@|$TLS_DIR/benchca.crt|g" \
        "$BENCH/configs/squid-sslbump.conf" >"$dir/squid.conf"
    launch "$dir" squid -N -f "$dir/squid.conf"
}

start_tls_mitmproxy-bump() {
    local dir=$1
    command -v mitmdump >/dev/null || { SKIP_REASON="mitmproxy not installed" && return 1; }
    mkdir -p "$dir/confdir"
    if [[ -z ${MITM_DEFAULT_CA:-} ]]; then
        cat "$TLS_DIR/intercept-ca.key" "$TLS_DIR/intercept-ca.crt" >"$dir/confdir/mitmproxy-ca.pem"
        chmod 600 "$dir/confdir/mitmproxy-ca.pem"
    fi
    PROXY_PORT=$(free_port)
    launch "$dir" "$BENCH/configs/mitmproxy-intercept.sh" "$PROXY_PORT" "$dir/confdir" \
        "$TLS_DIR/benchca.crt"
}

# Starts one TLS target in dir and warms it up (its leaf for bench.test is then cached).
# Sets TLS_ARGS[name] and TLS_PID[name]; on failure notes why and returns non-zero.
start_tls_target() { # name dir
    local name=$1 dir=$2
    mkdir -p "$dir"
    TLS_PID[$name]=
    if [[ $name == direct ]]; then
        TLS_ARGS[$name]=" "
        return 0
    fi
    SKIP_REASON=
    if ! "start_tls_$name" "$dir"; then
        TLS_NOTE[$name]="skipped: $SKIP_REASON; "
        log "tls $name: skipped: $SKIP_REASON"
        return 1
    fi
    if ! wait_listening "$PROXY_PORT" 60 "$PROXY_PID"; then
        TLS_NOTE[$name]+="did not start, see $dir/stderr.log; "
        log "tls $name: did not start: $(tail -3 "$dir/stderr.log" "$dir/stdout.log" 2>/dev/null)"
        stop_pid "$PROXY_PID"
        return 1
    fi
    TLS_PID[$name]=$PROXY_PID
    TLS_ARGS[$name]="--proxy 127.0.0.1:$PROXY_PORT"
    log "tls $name: listening on 127.0.0.1:$PROXY_PORT (pid $PROXY_PID)"
    local args
    read -ra args <<<"${TLS_ARGS[$name]}"
    "$LOADGEN" tls-rate "${args[@]}" --origin "127.0.0.1:$TLS_PORT" --concurrency 4 --secs 1 \
        >>"$dir/warmup.log" 2>&1 || true
}

tls_alive() {
    local name=$1 pid=${TLS_PID[$1]:-}
    [[ -n ${TLS_ARGS[$name]:-} ]] || return 1
    [[ -z $pid ]] && return 0
    kill -0 "$pid" 2>/dev/null && return 0
    TLS_NOTE[$name]+="proxy exited during the run; "
    unset "TLS_ARGS[$name]"
    return 1
}

stop_tls_target() {
    local name=$1
    [[ -n ${TLS_PID[$name]:-} ]] && stop_pid "${TLS_PID[$name]}"
    TLS_PID[$name]=
    unset "TLS_ARGS[$name]"
}

# One timed loadgen run against a TLS target; echoes "per_sec cpu_us" or nothing.
tls_measure() { # name label limit loadgen-mode loadgen-args...
    local name=$1 label=$2 limit=$3 mode=$4 args cpu=()
    shift 4
    read -ra args <<<"${TLS_ARGS[$name]}"
    [[ -n ${TLS_PID[$name]:-} ]] && cpu=(--cpu-pids "$(pid_list "${TLS_PID[$name]}")")
    loadgen_run "tls $name: $label" "$limit" "$mode" "${args[@]}" "$@" "${cpu[@]}"
    [[ -n $LOADGEN_LINE ]] || { TLS_NOTE[$name]+="$label produced no result; " && return 0; }
    local errors
    errors=$(field errors "$LOADGEN_LINE")
    if ((errors > 0)); then
        TLS_NOTE[$name]+="$errors errors in $label; "
    fi
}

tls_rate_once() { # name round
    tls_measure "$1" "tls-rate $2/$TLS_RUNS" $((TLS_SECS + 60)) tls-rate \
        --origin "127.0.0.1:$TLS_PORT" --sni bench.test --concurrency "$TLS_CONCURRENCY" \
        --secs "$TLS_SECS" --bytes "$TLS_BYTES"
    [[ -n $LOADGEN_LINE ]] || return 0
    TR_VALUES[$1]+=" $(field per_sec "$LOADGEN_LINE")"
    TR_CPU[$1]+=" $(field cpu_us_per_op "$LOADGEN_LINE")"
}

tls_keepalive_once() { # name round
    tls_measure "$1" "tls-keepalive $2/$TLS_RUNS" $((TLS_SECS + 60)) tls-keepalive \
        --origin "127.0.0.1:$TLS_PORT" --sni bench.test --concurrency "$TLS_CONCURRENCY" \
        --secs "$TLS_SECS" --bytes "$TLS_BYTES"
    [[ -n $LOADGEN_LINE ]] || return 0
    TK_VALUES[$1]+=" $(field per_sec "$LOADGEN_LINE")"
    TK_CPU[$1]+=" $(field cpu_us_per_op "$LOADGEN_LINE")"
}

plain_keepalive_once() { # round (handoff only)
    tls_measure handoff "plain keepalive $1/$TLS_RUNS" $((TLS_SECS + 60)) keepalive \
        --origin "127.0.0.1:$PLAIN_PORT" --concurrency "$TLS_CONCURRENCY" --secs "$TLS_SECS" \
        --bytes "$TLS_BYTES"
    [[ -n $LOADGEN_LINE ]] || return 0
    PLAIN_VALUES+=" $(field per_sec "$LOADGEN_LINE")"
    PLAIN_CPU+=" $(field cpu_us_per_op "$LOADGEN_LINE")"
}

# The same clients against the origin with no proxy at all: the ceiling this machine sets,
# since the client's and the origin's own TLS work share the cores with any proxy.
direct_once() { # round
    loadgen_run "tls direct: plain keepalive $1/$TLS_RUNS" $((TLS_SECS + 60)) keepalive \
        --origin "127.0.0.1:$PLAIN_PORT" --concurrency "$TLS_CONCURRENCY" --secs "$TLS_SECS" \
        --bytes "$TLS_BYTES"
    [[ -n $LOADGEN_LINE ]] && DIRECT_PLAIN+=" $(field per_sec "$LOADGEN_LINE")"
    loadgen_run "tls direct: tls-keepalive $1/$TLS_RUNS" $((TLS_SECS + 60)) tls-keepalive \
        --origin "127.0.0.1:$TLS_PORT" --sni bench.test --concurrency "$TLS_CONCURRENCY" \
        --secs "$TLS_SECS" --bytes "$TLS_BYTES"
    [[ -n $LOADGEN_LINE ]] && DIRECT_TLS+=" $(field per_sec "$LOADGEN_LINE")"
    loadgen_run "tls direct: tls-rate $1/$TLS_RUNS" $((TLS_SECS + 60)) tls-rate \
        --origin "127.0.0.1:$TLS_PORT" --sni bench.test --concurrency "$TLS_CONCURRENCY" \
        --secs "$TLS_SECS" --bytes "$TLS_BYTES"
    [[ -n $LOADGEN_LINE ]] && DIRECT_RATE+=" $(field per_sec "$LOADGEN_LINE")"
    return 0
}

# What the proxy says it minted, for raw.log: a check that the names really missed its cache.
log_mint_evidence() { # name dir
    local name=$1 dir=$2 misses
    case $name in
    handoff)
        misses=$(curl -s --max-time 5 "http://127.0.0.1:${ADMIN_OF[handoff]}/metrics" |
            awk '/^handoff_leaf_cache_misses_total/ { print $2 }' || true)
        log "tls $name: leaves minted since start (leaf cache misses): ${misses:-?}" ;;
    squid-bump)
        log "tls $name: certificates in the helper's database: $(grep -c . "$dir/ssl_db/index.txt" 2>/dev/null || echo ?)" ;;
    esac
}

# A fresh proxy (empty leaf caches) per run; each of MINT_NAMES names is used once.
mint_once() { # name round
    local name=$1 round=$2 dir="$TLS_DIR/$1-mint$2" finished
    start_tls_target "$name" "$dir" || return 0
    tls_measure "$name" "mint $round/$MINT_RUNS" $((MINT_MAX_SECS + 30)) tls-rate \
        --origin "127.0.0.1:$MINT_PORT" --sni 'n%d.bench.test' --names "$MINT_NAMES" --once \
        --concurrency "$TLS_CONCURRENCY" --secs "$MINT_MAX_SECS" --bytes "$TLS_BYTES"
    if [[ -n $LOADGEN_LINE ]]; then
        MINT_VALUES[$name]+=" $(field per_sec "$LOADGEN_LINE")"
        MINT_CPU[$name]+=" $(field cpu_us_per_op "$LOADGEN_LINE")"
        finished=$(($(field "done" "$LOADGEN_LINE") + $(field errors "$LOADGEN_LINE")))
        if ((finished < MINT_NAMES)); then
            TLS_NOTE[$name]+="mint run $round cut at ${MINT_MAX_SECS} s after $finished names; "
        fi
    fi
    log_mint_evidence "$name" "$dir"
    stop_tls_target "$name"
}

med() { # "v1 v2 ..." -> median
    local values
    read -ra values <<<"${1:-}"
    median "${values[@]}"
}

per_ms() { # µs -> ms with 2 decimals
    [[ -n $1 ]] || { echo "–" && return; }
    awk -v v="$1" 'BEGIN { printf "%.2f", v / 1000 }'
}

cmp_to_handoff() { # value -> handoff's value ÷ this one, "1" for handoff itself
    local mine=$1 theirs=$2
    [[ -n $mine && -n $theirs ]] || { echo "–" && return; }
    awk -v h="$mine" -v t="$theirs" 'BEGIN { if (t > 0) printf "%.2f", h / t; else print "–" }'
}

print_tls_table() {
    local name label h_tr h_tk h_mint tr tk mint note
    h_tr=$(med "${TR_VALUES[handoff]:-}")
    h_tk=$(med "${TK_VALUES[handoff]:-}")
    h_mint=$(med "${MINT_VALUES[handoff]:-}")
    echo "| target | new connections/s (median of $TLS_RUNS) | handoff ÷ this | proxy CPU ms per connection |" \
        "keep-alive requests/s (median of $TLS_RUNS) | handoff ÷ this | proxy CPU µs per request |" \
        "leaf minting: connections/s, $MINT_NAMES new names (median of $MINT_RUNS) | handoff ÷ this |" \
        "proxy CPU ms per minted connection | notes |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    for name in $TLS_TARGETS; do
        case $name in
        squid-bump) label="squid (ssl-bump)" ;;
        mitmproxy-bump) label="mitmproxy" ;;
        *) label=$name ;;
        esac
        tr=$(med "${TR_VALUES[$name]:-}")
        tk=$(med "${TK_VALUES[$name]:-}")
        mint=$(med "${MINT_VALUES[$name]:-}")
        note=${TLS_NOTE[$name]:-}
        echo "| $label | ${tr:-–} | $(cmp_to_handoff "$h_tr" "$tr") | $(per_ms "$(med "${TR_CPU[$name]:-}")") |" \
            "${tk:-–} | $(cmp_to_handoff "$h_tk" "$tk") | $(med "${TK_CPU[$name]:-}") |" \
            "${mint:-–} | $(cmp_to_handoff "$h_mint" "$mint") | $(per_ms "$(med "${MINT_CPU[$name]:-}")") | ${note%; } |"
    done
}

print_keepalive_table() {
    local plain tls plain_cpu tls_cpu
    plain=$(med "$PLAIN_VALUES")
    tls=$(med "${TK_VALUES[handoff]:-}")
    plain_cpu=$(med "$PLAIN_CPU")
    tls_cpu=$(med "${TK_CPU[handoff]:-}")
    echo "| handoff, keep-alive, $TLS_CONCURRENCY clients | requests/s (median of $TLS_RUNS) | proxy CPU µs per request |"
    echo "|---|---:|---:|"
    echo "| plain HTTP forwarding (absolute-form \`GET http://origin/N\`) | ${plain:-–} | ${plain_cpu:-–} |"
    echo "| intercepted HTTPS (\`GET /N\` inside the CONNECT tunnel) | ${tls:-–} | ${tls_cpu:-–} |"
    echo "| intercepted ÷ plain (target: at least 0.8) | $(ratio "$tls" "$plain") | $(ratio "$tls_cpu" "$plain_cpu") |"
    local dp dt dr
    dp=$(med "$DIRECT_PLAIN")
    dt=$(med "$DIRECT_TLS")
    dr=$(med "$DIRECT_RATE")
    echo
    echo "| no proxy (client straight to the origin), $TLS_CONCURRENCY clients | per second (median of $TLS_RUNS) |"
    echo "|---|---:|"
    echo "| plain HTTP keep-alive requests | ${dp:-–} |"
    echo "| HTTPS keep-alive requests | ${dt:-–} |"
    echo "| HTTPS ÷ plain without any proxy: the ceiling for the ratio above on this machine | $(ratio "$dt" "$dp") |"
    echo "| new HTTPS connections, one request each: the ceiling for every proxy's new connections/s | ${dr:-–} |"
}

print_tls_targets() {
    local h s m k
    h=$(med "${TR_VALUES[handoff]:-}")
    s=$(med "${TR_VALUES[squid-bump]:-}")
    m=$(med "${TR_VALUES[mitmproxy-bump]:-}")
    k=$(ratio "$(med "${TK_VALUES[handoff]:-}")" "$(med "$PLAIN_VALUES")")
    verdict() { # value target
        awk -v v="$1" -v t="$2" 'BEGIN { if (v == "–" || v == "") print "not measured";
            else if (v + 0 >= t) print "met"; else print "not met" }'
    }
    local hs hm
    hs=$(cmp_to_handoff "$h" "$s")
    hm=$(cmp_to_handoff "$h" "$m")
    echo "Targets: new connections at least 2x Squid's ssl-bump: ${hs}x ($(verdict "$hs" 2));" \
        "at least 10x mitmproxy: ${hm}x ($(verdict "$hm" 10));" \
        "keep-alive over intercepted TLS at least 0.8 of plain HTTP: $k ($(verdict "$k" 0.8))."
}

tls_part() {
    local started=$SECONDS name round
    mkdir -p "$TLS_DIR"
    chmod 755 "$TLS_DIR"
    log "tls: making the bench CA, the origin's certificates ($MINT_NAMES names) and the interception CA"
    if ! make_tls_material; then
        log "tls: certificate set-up failed, see $TLS_DIR/openssl.log"
        return 1
    fi
    if ! start_origin; then
        log "tls: nginx did not start: $(tail -3 "$TLS_DIR/error.log" "$TLS_DIR/nginx.out" 2>/dev/null)"
        return 1
    fi
    log "tls: origin nginx (pid $ORIGIN_PID): https 127.0.0.1:$TLS_PORT, http 127.0.0.1:$PLAIN_PORT, per-name https 127.0.0.1:$MINT_PORT"
    log "tls: targets $TLS_TARGETS; ${TLS_RUNS}x ${TLS_SECS}s runs at $TLS_CONCURRENCY clients; mint ${MINT_RUNS}x $MINT_NAMES names"
    for name in $TLS_TARGETS; do
        start_tls_target "$name" "$TLS_DIR/$name" || true
    done
    for round in $(seq "$TLS_RUNS"); do
        for name in $TLS_TARGETS; do
            if tls_alive "$name"; then tls_rate_once "$name" "$round"; fi
        done
    done
    for round in $(seq "$TLS_RUNS"); do
        for name in $TLS_TARGETS; do
            if tls_alive "$name"; then tls_keepalive_once "$name" "$round"; fi
            if [[ $name == handoff ]] && tls_alive handoff; then plain_keepalive_once "$round"; fi
        done
        direct_once "$round"
    done
    for name in $TLS_TARGETS; do
        tls_alive "$name" || true
        stop_tls_target "$name"
    done
    for round in $(seq "$MINT_RUNS"); do
        for name in $TLS_TARGETS; do
            [[ ${TLS_NOTE[$name]:-} == skipped* ]] || mint_once "$name" "$round"
        done
    done
    stop_pid "$ORIGIN_PID"

    {
        echo "## handoff benchmark: TLS interception ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -r))"
        echo
        print_tls_table
        echo
        print_keepalive_table
        echo
        print_tls_targets
        echo
        echo "Versions: $( (squid -v 2>/dev/null || true) | head -1);" \
            "mitmproxy $( (mitmdump --version 2>/dev/null || true) | sed -n 's/^Mitmproxy: *//p');" \
            "$(nginx -v 2>&1); $(openssl version)." \
            "Raw figures: $RAW. Took $((SECONDS - started)) s."
        echo
    } | tee -a "$OUT/results.md"
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
cc -O2 -Wall -Wextra -Werror "$BENCH/loadgen.c" -o "$LOADGEN" -lssl -lcrypto
cc -O2 -Wall -Wextra -Werror "$BENCH/sink.c" -o "$OUT/sink"
: >"$OUT/results.md"

# shellcheck source=bench/floor.sh
source "$BENCH/floor.sh"
if [[ $PART == tunnel || $PART == all ]]; then tunnel_part; fi
if [[ $PART == tls || $PART == all ]]; then tls_part; fi
if [[ $PART == floor || $PART == all ]]; then floor_part; fi
log "bench: results in $OUT/results.md"

