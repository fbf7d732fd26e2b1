# shellcheck shell=bash
# The floor part of bench/run.sh (sourced by it; uses its helpers): handoff's own cost per unit
# of work and per idle connection next to HAProxy 2.6 doing the same work with nothing extra
# (the floor), and Squid where it does the same job. See bench/README.md, "Part 3".
#
# Targets (FLOOR_TARGETS): handoff, haproxy, squid, and handoff-before when HANDOFF_BEFORE
# names an older handoff binary to compare with. Each target has one process per role:
#   tunnel     handoff (detection on) / HAProxy TCP mode with splicing / Squid forward proxy
#   intercept  handoff with ssl.forward_proxy(https) / HAProxy TLS termination and re-encryption
#              / Squid ssl-bump
#   forward    handoff (the tunnel instance) / HAProxy HTTP mode / Squid (the tunnel instance)
# HAProxy is spoken to as if it were the origin; the others through CONNECT or absolute-form.

FLOOR_DIR="$OUT/floor"
FLOOR_TARGETS=${FLOOR_TARGETS:-haproxy handoff squid}
if [[ -n ${HANDOFF_BEFORE:-} && " $FLOOR_TARGETS " != *" handoff-before "* ]]; then
    FLOOR_TARGETS+=" handoff-before"
fi
FLOOR_RUNS=${FLOOR_RUNS:-3}
FLOOR_SECS=${FLOOR_SECS:-3}
FLOOR_BULK_BYTES=${FLOOR_BULK_BYTES:-1073741824}
FLOOR_HOLD=${FLOOR_HOLD:-5000}
FLOOR_HOLD_LARGE=${FLOOR_HOLD_LARGE:-50000}
BURST_COUNT=${BURST_COUNT:-10000}
BURST_SETTLE_SECS=${BURST_SETTLE_SECS:-10}
FLOOR_PERF=${FLOOR_PERF:-1}
FLOOR_WORKLOADS="bulk tunnel intercept intercept-keepalive forward-keepalive"

declare -A F_PID F_PORT F_CPU F_RATE F_NOTE F_MEM F_BASE F_MEMNOTE F_BURST F_PERF

# The process that does a workload's job for a target: its role.
role_of() { # target workload
    case $2 in
    bulk | tunnel) echo tunnel ;;
    forward-keepalive) [[ $1 == haproxy ]] && echo forward || echo tunnel ;;
    *) echo intercept ;;
    esac
}

floor_origin() { # starts sink (tunnel origin) and nginx (TLS and plain HTTP origin)
    local d=$FLOOR_DIR/tls
    "$OUT/sink" >"$FLOOR_DIR/sink.log" 2>&1 &
    F_SINK_PID=$!
    STARTED_PIDS+=("$F_SINK_PID")
    for _ in $(seq 50); do
        grep -q '^port' "$FLOOR_DIR/sink.log" && break
        sleep 0.1
    done
    F_SINK_PORT=$(awk '/^port/ { print $2 }' "$FLOOR_DIR/sink.log")
    [[ -n $F_SINK_PORT ]] || return 1
    F_TLS_PORT=$(free_port)
    F_PLAIN_PORT=$(free_port)
    : >"$d/mint-servers.conf"
    sed "s|@DIR@|$d|g; s|@TLS_PORT@|$F_TLS_PORT|g; s|@PLAIN_PORT@|$F_PLAIN_PORT|g" \
        "$BENCH/configs/nginx-origin.conf" >"$d/nginx.conf"
    chmod 777 "$d/tmp"
    nginx -p "$d" -c "$d/nginx.conf" -e "$d/error.log" >"$d/nginx.out" 2>&1 &
    F_NGINX_PID=$!
    STARTED_PIDS+=("$F_NGINX_PID")
    wait_listening "$F_TLS_PORT" 30 "$F_NGINX_PID" && wait_listening "$F_PLAIN_PORT" 10 "$F_NGINX_PID"
}

start_haproxy_role() { # dir role(tcp|tls|http) origin
    local dir=$1 role=$2 origin=$3 threads
    command -v haproxy >/dev/null || { SKIP_REASON="haproxy not installed" && return 1; }
    threads=$(nproc) # handoff's workers = auto
    PROXY_PORT=$(free_port)
    cat "$FLOOR_DIR/tls/origin.crt" "$FLOOR_DIR/tls/origin.key" >"$dir/origin.pem"
    chmod 600 "$dir/origin.pem"
    sed "s|@PORT@|$PROXY_PORT|g; s|@ORIGIN@|$origin|g; s|@THREADS@|$threads|g;
         s|@MAXCONN@|$F_MAXCONN|g; s|@PEM@|$dir/origin.pem|g; s|@CA@|$FLOOR_DIR/tls/benchca.crt|g" \
        "$BENCH/configs/haproxy-$role.cfg" >"$dir/haproxy.cfg"
    if ! haproxy -c -q -f "$dir/haproxy.cfg" >"$dir/check.log" 2>&1; then
        SKIP_REASON="config rejected: $(head -1 "$dir/check.log")"
        return 1
    fi
    launch "$dir" haproxy -db -f "$dir/haproxy.cfg"
}

start_squid_forward() { # dir: the bench's squid.conf with persistent connections allowed
    local dir=$1
    command -v squid >/dev/null || { SKIP_REASON="squid not installed" && return 1; }
    chmod 777 "$dir"
    PROXY_PORT=$(free_port)
    sed "s|@PORT@|$PROXY_PORT|g; s|@DIR@|$dir|g; s|_persistent_connections off|_persistent_connections on|" \
        "$BENCH/configs/squid.conf" >"$dir/squid.conf"
    launch "$dir" squid -N -f "$dir/squid.conf"
}

# Starts the process of one target for one role; sets F_PID and F_PORT[target:role].
start_floor_process() { # target role
    local target=$1 role=$2 key="$1:$2" dir="$FLOOR_DIR/$1-$2" ok=0 saved=$HANDOFF
    mkdir -p "$dir"
    SKIP_REASON=
    case $target:$role in
    handoff:tunnel) start_handoff "$dir" || ok=1 ;;
    handoff:intercept) start_tls_handoff "$dir" || ok=1 ;;
    handoff-before:tunnel) HANDOFF=$HANDOFF_BEFORE && { start_handoff "$dir" || ok=1; } ;;
    handoff-before:intercept) HANDOFF=$HANDOFF_BEFORE && { start_tls_handoff "$dir" || ok=1; } ;;
    haproxy:tunnel) start_haproxy_role "$dir" tcp "127.0.0.1:$F_SINK_PORT" || ok=1 ;;
    haproxy:intercept) start_haproxy_role "$dir" tls "127.0.0.1:$F_TLS_PORT" || ok=1 ;;
    haproxy:forward) start_haproxy_role "$dir" http "127.0.0.1:$F_PLAIN_PORT" || ok=1 ;;
    squid:tunnel) start_squid_forward "$dir" || ok=1 ;;
    squid:intercept) start_tls_squid-bump "$dir" || ok=1 ;;
    esac
    HANDOFF=$saved
    if ((ok != 0)); then
        F_NOTE[$target]+="$role skipped: $SKIP_REASON; "
        log "floor $key: skipped: $SKIP_REASON"
        return 1
    fi
    if ! wait_listening "$PROXY_PORT" 60 "$PROXY_PID"; then
        F_NOTE[$target]+="$role did not start (see $dir/stderr.log); "
        log "floor $key: did not start: $(tail -3 "$dir/stderr.log" 2>/dev/null)"
        stop_pid "$PROXY_PID"
        return 1
    fi
    F_PID[$key]=$PROXY_PID
    F_PORT[$key]=$PROXY_PORT
    log "floor $key: listening on 127.0.0.1:$PROXY_PORT (pid $PROXY_PID)"
}

# loadgen arguments (first hop and origin) for a workload against a target, or nothing.
floor_args() { # target workload
    local target=$1 workload=$2 role port origin
    role=$(role_of "$target" "$workload")
    case $workload in
    bulk | tunnel) origin=$F_SINK_PORT ;;
    intercept | intercept-keepalive) origin=$F_TLS_PORT ;;
    forward-keepalive) origin=$F_PLAIN_PORT ;;
    esac
    if [[ $target == haproxy ]]; then
        port=${F_PORT[haproxy:$role]:-}
        [[ -n $port ]] && echo "--origin 127.0.0.1:$port"
        return 0
    fi
    port=${F_PORT[$target:$role]:-}
    [[ -n $port ]] && echo "--proxy 127.0.0.1:$port --origin 127.0.0.1:$origin"
    return 0
}

floor_pid() { # target workload
    echo "${F_PID[$1:$(role_of "$1" "$2")]:-}"
}

floor_alive() { # target workload
    local pid
    pid=$(floor_pid "$1" "$2")
    [[ -n $pid ]] || return 1
    kill -0 "$pid" 2>/dev/null && return 0
    F_NOTE[$1]+="$(role_of "$1" "$2") process exited during the run; "
    F_PID[$1:$(role_of "$1" "$2")]=
    return 1
}

# One timed run of a workload against a target: appends "rate" and "cpu per unit".
floor_once() { # target workload round
    local target=$1 workload=$2 round=$3 args pid line
    read -ra args <<<"$(floor_args "$target" "$workload")"
    ((${#args[@]})) || return 0
    pid=$(pid_list "$(floor_pid "$target" "$workload")")
    local common=(--concurrency "$RATE_CONCURRENCY" --secs "$FLOOR_SECS" --bytes 100 --cpu-pids "$pid")
    case $workload in
    bulk)
        line=$(timeout 60 "$LOADGEN" bulk "${args[@]}" --bytes "$FLOOR_BULK_BYTES" \
            --max-secs "$BULK_MAX_SECS" --cpu-pids "$pid" 2>&1 | tail -1) || true
        log "floor $target: bulk $round/$FLOOR_RUNS: $line"
        [[ $line == bulk* ]] || return 0
        F_RATE[$target:$workload]+=" $(field mbps "$line")"
        F_CPU[$target:$workload]+=" $(field cpu_s_per_gb "$line")"
        return 0 ;;
    tunnel) loadgen_run "floor $target: $workload $round/$FLOOR_RUNS" 60 rate "${args[@]}" "${common[@]}" ;;
    intercept) loadgen_run "floor $target: $workload $round/$FLOOR_RUNS" 60 tls-rate "${args[@]}" \
        --sni bench.test "${common[@]}" ;;
    intercept-keepalive) loadgen_run "floor $target: $workload $round/$FLOOR_RUNS" 60 tls-keepalive \
        "${args[@]}" --sni bench.test "${common[@]}" ;;
    forward-keepalive) loadgen_run "floor $target: $workload $round/$FLOOR_RUNS" 60 keepalive \
        "${args[@]}" "${common[@]}" ;;
    esac
    [[ -n $LOADGEN_LINE ]] || { F_NOTE[$target]+="$workload run $round produced nothing; " && return 0; }
    F_RATE[$target:$workload]+=" $(field per_sec "$LOADGEN_LINE")"
    F_CPU[$target:$workload]+=" $(field cpu_us_per_op "$LOADGEN_LINE")"
    local errors
    errors=$(field errors "$LOADGEN_LINE")
    ((errors == 0)) || F_NOTE[$target]+="$errors errors in $workload run $round; "
}

# Idle connections: RSS of the role's process before and after opening count of them (tunnels
# with `hold`, intercepted connections with `tls-hold`: handshake and one request each).
# Sets HOLD_BEFORE, HOLD_PEAK (KiB), HOLD_OPEN; leaves them open until hold_close.
HOLD_PID=
hold_open() { # target kind(tunnel|intercept) count label
    local target=$1 kind=$2 count=$3 label=$4 args pid mode=hold extra=()
    local workload=tunnel
    [[ $kind == intercept ]] && workload=intercept && mode=tls-hold && extra=(--sni bench.test)
    read -ra args <<<"$(floor_args "$target" "$workload")"
    HOLD_OPEN=0
    ((${#args[@]})) || return 1
    pid=$(floor_pid "$target" "$workload")
    HOLD_BEFORE=$(tree_rss_kib "$pid")
    "$LOADGEN" "$mode" "${args[@]}" "${extra[@]}" --count "$count" --secs 240 \
        >"$FLOOR_DIR/$label.log" 2>&1 &
    HOLD_PID=$!
    STARTED_PIDS+=("$HOLD_PID")
    for _ in $(seq 1200); do
        grep -q '^ready' "$FLOOR_DIR/$label.log" && break
        kill -0 "$HOLD_PID" 2>/dev/null || break
        sleep 0.1
    done
    sleep "$HOLD_SETTLE_SECS" # past handoff's detection deadline: tunnels have settled
    HOLD_PEAK=$(tree_rss_kib "$pid")
    HOLD_OPEN=$(field established "$(grep '^ready' "$FLOOR_DIR/$label.log" || true)")
    HOLD_OPEN=${HOLD_OPEN:-0}
    log "floor $target: $label: $(grep '^ready' "$FLOOR_DIR/$label.log" || echo 'no ready line') rss before=$HOLD_BEFORE KiB with them open=$HOLD_PEAK KiB"
}
hold_close() {
    [[ -n $HOLD_PID ]] && stop_pid "$HOLD_PID"
    HOLD_PID=
}

floor_memory() { # target kind [count]
    local target=$1 kind=$2 count=${3:-$FLOOR_HOLD} key=$2
    ((count == FLOOR_HOLD)) || key=$kind-$count
    hold_open "$target" "$kind" "$count" "hold-$target-$key" || return 0
    hold_close
    F_BASE[$target:$key]=$HOLD_BEFORE
    if ((HOLD_OPEN > 0)); then
        F_MEM[$target:$key]=$(awk -v a="$HOLD_PEAK" -v b="$HOLD_BEFORE" -v n="$HOLD_OPEN" \
            'BEGIN { printf "%.1f", (a - b) / n }')
        ((HOLD_OPEN >= count)) || F_MEMNOTE[$target]+="only $HOLD_OPEN of $count $kind connections opened; "
    else
        F_MEMNOTE[$target]+="no idle $kind connection opened; "
    fi
    sleep 1
}

# A burst: count connections opened, held, closed; RSS before, with them open, and
# BURST_SETTLE_SECS after they closed.
floor_burst() { # target kind
    local target=$1 kind=$2 after pid workload=tunnel
    [[ $kind == intercept ]] && workload=intercept
    pid=$(floor_pid "$target" "$workload")
    [[ -n $pid ]] || return 0
    hold_open "$target" "$kind" "$F_BURST_COUNT" "burst-$target-$kind" || return 0
    hold_close
    sleep "$BURST_SETTLE_SECS"
    after=$(tree_rss_kib "$pid")
    F_BURST[$target:$kind]="$HOLD_OPEN $HOLD_BEFORE $HOLD_PEAK $after"
    log "floor $target: burst $kind: $HOLD_OPEN open; rss before=$HOLD_BEFORE peak=$HOLD_PEAK ${BURST_SETTLE_SECS}s after close=$after KiB"
}

# One run under `perf stat` attached to the proxy: system calls and CPU per unit of work.
floor_perf() { # target workload
    local target=$1 workload=$2 pid out perf_pid calls clock units
    pid=$(floor_pid "$target" "$workload")
    [[ -n $pid ]] || return 0
    out="$FLOOR_DIR/perf-$target-$workload.txt"
    perf stat -x, -e task-clock,raw_syscalls:sys_enter -p "$(pid_list "$pid")" -o "$out" &
    perf_pid=$!
    STARTED_PIDS+=("$perf_pid")
    sleep 0.3
    local saved_cpu=${F_CPU[$target:$workload]:-} saved_rate=${F_RATE[$target:$workload]:-}
    floor_once "$target" "$workload" perf
    F_CPU[$target:$workload]=$saved_cpu
    F_RATE[$target:$workload]=$saved_rate
    kill -INT "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
    calls=$(awk -F, '$3 ~ /raw_syscalls:sys_enter/ { print $1 }' "$out" 2>/dev/null)
    clock=$(awk -F, '$3 ~ /task-clock/ { print $1 }' "$out" 2>/dev/null)
    if [[ $workload == bulk ]]; then
        units=$(field bytes "$(grep "floor $target: bulk perf" "$RAW" | tail -1 || true)")
        units=$(awk -v b="${units:-0}" 'BEGIN { printf "%.6f", b / 1e9 }')
    else
        units=$(field "done" "$LOADGEN_LINE")
    fi
    [[ -n $calls && -n $clock && -n $units ]] || return 0
    F_PERF[$target:$workload]=$(awk -v c="$calls" -v t="$clock" -v u="$units" \
        'BEGIN { if (u > 0) printf "%.1f %.1f", c / u, t * 1000 / u }')
    log "floor $target: perf $workload: syscalls=$calls task-clock=${clock}ms units=$units"
}

# ---- tables ----
unit_of() {
    case $1 in
    bulk) echo "CPU s per GB" ;;
    *) echo "CPU µs per op" ;;
    esac
}
workload_label() {
    case $1 in
    bulk) echo "bulk through a tunnel (1 GiB, one connection), CPU s per GB" ;;
    tunnel) echo "new tunnel + one GET, CPU µs per connection" ;;
    intercept) echo "new intercepted TLS connection + one GET, CPU µs per connection" ;;
    intercept-keepalive) echo "keep-alive GET inside intercepted TLS, CPU µs per request" ;;
    forward-keepalive) echo "absolute-URI GET, keep-alive, CPU µs per request" ;;
    esac
}
rate_label() {
    case $1 in
    bulk) echo "bulk MB/s" ;;
    tunnel) echo "new tunnels/s" ;;
    intercept) echo "new intercepted connections/s" ;;
    intercept-keepalive) echo "keep-alive requests/s inside TLS" ;;
    forward-keepalive) echo "absolute-URI keep-alive requests/s" ;;
    esac
}
floor_label() {
    case $1 in
    haproxy) echo "HAProxy (the floor)" ;;
    handoff-before) echo "handoff before" ;;
    squid) echo "Squid" ;;
    *) echo "$1" ;;
    esac
}
others() { # the targets other than haproxy, in FLOOR_TARGETS order
    local t
    for t in $FLOOR_TARGETS; do [[ $t == haproxy ]] || echo "$t"; done
}

mib() { # KiB -> MiB with one decimal, or a dash
    [[ -n $1 ]] || { echo "–" && return; }
    awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'
}

# One row per workload: the median of each target's samples in the named array, beside its
# ratio to HAProxy's.
median_rows() {
    local -n samples=$1
    local label=$2 others_list=$3 w t floor v row
    for w in $FLOOR_WORKLOADS; do
        floor=$(med "${samples[haproxy:$w]:-}")
        row="| $($label "$w") | ${floor:-–} |"
        for t in $others_list; do
            v=$(med "${samples[$t:$w]:-}")
            row+=" ${v:-–} | $(ratio "$v" "$floor") |"
        done
        echo "$row"
    done
}

print_floor_tables() {
    local w t floor v header sep row others_list
    others_list=$(others | paste -sd' ')
    header="| workload | HAProxy (the floor) |"
    sep="|---|---:|"
    for t in $others_list; do
        header+=" $(floor_label "$t") | ÷ floor |"
        sep+="---:|---:|"
    done
    echo "Proxy CPU per unit of work (median of $FLOOR_RUNS runs, targets alternating; lower is better):"
    echo
    echo "$header"
    echo "$sep"
    median_rows F_CPU workload_label "$others_list"
    echo
    echo "Throughput in the same runs (client, origin and proxy share the cores):"
    echo
    echo "$header"
    echo "$sep"
    median_rows F_RATE rate_label "$others_list"
    echo
    echo "Memory (RSS growth of the proxy per idle connection, KiB; detection on for handoff):"
    echo
    echo "$header"
    echo "$sep"
    local k
    for k in tunnel intercept "tunnel-$FLOOR_HOLD_LARGE"; do
        [[ -n ${F_MEM[haproxy:$k]:-}${F_MEM[handoff:$k]:-} ]] || continue
        floor=${F_MEM[haproxy:$k]:-}
        case $k in
        tunnel) row="| per idle tunnel at $FLOOR_HOLD |" ;;
        intercept) row="| per idle intercepted connection at $FLOOR_HOLD (handshake and one GET done) |" ;;
        *) row="| per idle tunnel at $FLOOR_HOLD_LARGE |" ;;
        esac
        row+=" ${floor:-–} |"
        for t in $others_list; do
            v=${F_MEM[$t:$k]:-}
            row+=" ${v:-–} | $(ratio "$v" "$floor") |"
        done
        echo "$row"
    done
    for k in tunnel intercept; do
        floor=${F_BASE[haproxy:$k]:-}
        row="| RSS before the idle $k connections (after the warm-up), MiB | $(mib "$floor") |"
        for t in $others_list; do
            v=${F_BASE[$t:$k]:-}
            row+=" $(mib "$v") | $(ratio "$v" "$floor") |"
        done
        echo "$row"
    done
    if ((${#F_BURST[@]})); then
        echo
        echo "Memory comes back: $F_BURST_COUNT connections opened, held, closed; RSS in MiB:"
        echo
        echo "| target | connections | opened | before | with them open | ${BURST_SETTLE_SECS} s after close | after − before |"
        echo "|---|---|---:|---:|---:|---:|---:|"
        local n b p a
        for t in $FLOOR_TARGETS; do
            for k in tunnel intercept; do
                [[ -n ${F_BURST[$t:$k]:-} ]] || continue
                read -r n b p a <<<"${F_BURST[$t:$k]}"
                awk -v t="$(floor_label "$t")" -v k="$k" -v n="$n" -v b="$b" -v p="$p" -v a="$a" \
                    'BEGIN { printf "| %s | %s | %d | %.1f | %.1f | %.1f | %+.1f |\n", t,
                        k == "tunnel" ? "tunnels" : "intercepted", n, b / 1024, p / 1024,
                        a / 1024, (a - b) / 1024 }'
            done
        done
    fi
    if ((${#F_PERF[@]})); then
        echo
        echo "One more run of each workload under \`perf stat -e task-clock,raw_syscalls:sys_enter\`" \
            "attached to the proxy (per GB for bulk, per connection or request otherwise):"
        echo
        echo "| workload | target | system calls per unit | task-clock µs per unit (s per GB for bulk) |"
        echo "|---|---|---:|---:|"
        local calls clock
        for w in $FLOOR_WORKLOADS; do
            for t in $FLOOR_TARGETS; do
                [[ -n ${F_PERF[$t:$w]:-} ]] || continue
                read -r calls clock <<<"${F_PERF[$t:$w]}"
                [[ $w == bulk ]] && clock=$(awk -v c="$clock" 'BEGIN { printf "%.3f", c / 1e6 }')
                echo "| $w | $(floor_label "$t") | $calls | $clock |"
            done
        done
    fi
    local notes=
    for t in $FLOOR_TARGETS; do
        [[ -n ${F_NOTE[$t]:-}${F_MEMNOTE[$t]:-} ]] && notes+=" $(floor_label "$t"): ${F_NOTE[$t]:-}${F_MEMNOTE[$t]:-}"
    done
    if [[ -n $notes ]]; then
        echo
        echo "Notes:${notes%; }."
    fi
}

floor_part() {
    local started=$SECONDS t w round order k load_start
    load_start=$(cut -d' ' -f1-3 /proc/loadavg)
    mkdir -p "$FLOOR_DIR/tls"
    chmod 755 "$FLOOR_DIR" "$FLOOR_DIR/tls"
    F_MAXCONN=$((($(ulimit -n) - 600) / 2))
    F_BURST_COUNT=$BURST_COUNT
    if ((F_BURST_COUNT > F_MAXCONN)); then
        F_BURST_COUNT=$F_MAXCONN
        log "floor: open-file limit $(ulimit -n): burst lowered to $F_BURST_COUNT connections (a proxy holds two descriptors per connection)"
    fi
    if ((FLOOR_HOLD > F_MAXCONN)); then
        FLOOR_HOLD=$F_MAXCONN
    fi
    # The bench CA, the origin's certificate (HAProxy presents it too) and Squid's CA.
    local saved_dir=$TLS_DIR saved_names=$MINT_NAMES
    TLS_DIR="$FLOOR_DIR/tls"
    MINT_NAMES=0
    if ! make_tls_material; then
        log "floor: certificate set-up failed, see $TLS_DIR/openssl.log"
        return 1
    fi
    if ! floor_origin; then
        log "floor: origins did not start: $(tail -3 "$TLS_DIR/error.log" "$FLOOR_DIR/sink.log" 2>/dev/null)"
        return 1
    fi
    log "floor: sink 127.0.0.1:$F_SINK_PORT, nginx https 127.0.0.1:$F_TLS_PORT http 127.0.0.1:$F_PLAIN_PORT; targets $FLOOR_TARGETS; ${FLOOR_RUNS}x ${FLOOR_SECS}s runs at $RATE_CONCURRENCY clients"
    for t in $FLOOR_TARGETS; do
        start_floor_process "$t" tunnel || true
        start_floor_process "$t" intercept || true
        [[ $t == haproxy ]] && { start_floor_process haproxy forward || true; }
    done
    # Warm-up (leaves cached, pools filled), then idle memory before any timed load.
    for t in $FLOOR_TARGETS; do
        for w in tunnel intercept forward-keepalive; do
            local args
            read -ra args <<<"$(floor_args "$t" "$w")"
            ((${#args[@]})) || continue
            case $w in
            tunnel) "$LOADGEN" rate "${args[@]}" --concurrency 4 --secs 1 ;;
            intercept) "$LOADGEN" tls-rate "${args[@]}" --sni bench.test --concurrency 4 --secs 1 ;;
            forward-keepalive) "$LOADGEN" keepalive "${args[@]}" --concurrency 4 --secs 1 ;;
            esac >>"$FLOOR_DIR/warmup.log" 2>&1 || true
        done
    done
    sleep 0.5
    for t in $FLOOR_TARGETS; do
        for k in tunnel intercept; do
            floor_alive "$t" "$k" && floor_memory "$t" "$k"
        done
    done
    # The large variant needs two descriptors per tunnel in the proxy and one in loadgen.
    if ((FLOOR_HOLD_LARGE > FLOOR_HOLD)); then
        if ((FLOOR_HOLD_LARGE <= F_MAXCONN)); then
            for t in haproxy handoff; do
                [[ " $FLOOR_TARGETS " == *" $t "* ]] && floor_alive "$t" tunnel &&
                    floor_memory "$t" tunnel "$FLOOR_HOLD_LARGE"
            done
        else
            F_NOTE[handoff]+="$FLOOR_HOLD_LARGE idle tunnels not measured: the open-file limit is $(ulimit -n) (hard limit $(ulimit -Hn)); "
        fi
    fi
    # Timed rounds: every workload across every target, the order reversed every other round.
    order=$FLOOR_TARGETS
    for round in $(seq "$FLOOR_RUNS"); do
        for w in $FLOOR_WORKLOADS; do
            for t in $order; do
                floor_alive "$t" "$w" && floor_once "$t" "$w" "$round"
            done
        done
        order=$(tr ' ' '\n' <<<"$order" | tac | paste -sd' ')
    done
    if [[ $FLOOR_PERF == 1 ]] && command -v perf >/dev/null; then
        for w in $FLOOR_WORKLOADS; do
            for t in handoff haproxy; do
                [[ " $FLOOR_TARGETS " == *" $t "* ]] && floor_alive "$t" "$w" && floor_perf "$t" "$w"
            done
        done
    fi
    for t in handoff haproxy; do
        [[ " $FLOOR_TARGETS " == *" $t "* ]] || continue
        for k in tunnel intercept; do
            floor_alive "$t" "$k" && floor_burst "$t" "$k"
        done
    done
    for k in "${!F_PID[@]}"; do
        [[ -n ${F_PID[$k]} ]] && stop_pid "${F_PID[$k]}"
    done
    stop_pid "$F_NGINX_PID"
    stop_pid "$F_SINK_PID"
    TLS_DIR=$saved_dir
    MINT_NAMES=$saved_names
    {
        echo "## handoff benchmark: cost per unit of work against HAProxy ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -r))"
        echo
        print_floor_tables
        echo
        echo "Versions: $(haproxy -v 2>/dev/null | head -1 | cut -d' ' -f1-3); $( (squid -v 2>/dev/null || true) | head -1);" \
            "$(nginx -v 2>&1); $(openssl version)." \
            "Load average (1, 5, 15 min) at the start: $load_start; at the end: $(cut -d' ' -f1-3 /proc/loadavg)." \
            "Raw figures: $RAW. Took $((SECONDS - started)) s."
        echo
    } | tee -a "$OUT/results.md"
}
