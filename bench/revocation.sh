#!/usr/bin/env bash
# Cost of origin revocation checks (SPEC 6.2): new intercepted connections/s through handoff
# with `check_revocation = auto` against a cached good status, compared with the same run with
# `check_revocation = no`. The origin (nginx) presents a certificate whose AIA names an
# `openssl ocsp` responder on loopback; only the first connection asks it, the rest hit the
# shared status cache. Runs alternate (no, auto, no, auto, ...) so drift on a shared machine
# hits both alike; the medians and their ratio are printed.
#
#   bench/revocation.sh                 HANDOFF=build/proxy/handoff, 3 rounds of 10 s
#   ROUNDS=5 SECS=20 CONCURRENCY=64 bench/revocation.sh
set -euo pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
HANDOFF=${HANDOFF:-$BENCH/../build/proxy/handoff}
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-10}
CONCURRENCY=${CONCURRENCY:-64}
BYTES=${BYTES:-1000}
OUT=$(mktemp -d /tmp/handoff-bench-revocation.XXXXXX)
chmod 755 "$OUT" # nginx workers (nobody) read www/ below it
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(socket.AF_INET6); s.bind(("::", 0)); print(s.getsockname()[1])'
}

wait_listening() { # port
    local i
    for ((i = 0; i < 100; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on $1" >&2
    return 1
}

[[ -x $HANDOFF ]] || { echo "no handoff binary at $HANDOFF" >&2 && exit 2; }
command -v nginx >/dev/null || { echo "nginx is needed as the origin" >&2 && exit 2; }
cc -O2 -Wall -Wextra -Werror "$BENCH/loadgen.c" -o "$OUT/loadgen" -lssl -lcrypto

# The origin's CA keeps `openssl ca` records, so `openssl ocsp -index` can answer for it.
cd "$OUT"
mkdir -p issued www tmp
: >index.txt
echo 1000 >serial
cat >ca.cnf <<CNF
[ca]
default_ca = bench
[bench]
dir = $OUT
database = \$dir/index.txt
new_certs_dir = \$dir/issued
serial = \$dir/serial
certificate = \$dir/ca.crt
private_key = \$dir/ca.key
default_md = sha256
policy = any
copy_extensions = none
[any]
commonName = supplied
[leaf]
basicConstraints = critical, CA:FALSE
extendedKeyUsage = serverAuth
subjectAltName = DNS:bench.test, IP:127.0.0.1
authorityInfoAccess = OCSP;URI:http://127.0.0.1:@OCSP@/
CNF
OCSP_PORT=$(free_port)
sed -i "s/@OCSP@/$OCSP_PORT/" ca.cnf
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt \
    -days 30 -subj "/CN=handoff bench revocation CA" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" >openssl.log 2>&1
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out origin.key >>openssl.log 2>&1
openssl req -new -key origin.key -subj /CN=bench.test -out origin.csr >>openssl.log 2>&1
openssl ca -batch -config ca.cnf -in origin.csr -out origin.crt -days 30 -extensions leaf \
    -notext >>openssl.log 2>&1
chmod 644 origin.key
head -c "$BYTES" /dev/zero | tr '\0' x >"www/$BYTES"

openssl ocsp -index index.txt -port "$OCSP_PORT" -rsigner ca.crt -rkey ca.key -CA ca.crt \
    -ndays 1 >ocsp.log 2>&1 &
PIDS+=($!)

TLS_PORT=$(free_port)
cat >nginx.conf <<CONF
worker_processes 1;
daemon off;
pid $OUT/nginx.pid;
error_log $OUT/nginx-error.log error;
events { worker_connections 16384; }
http {
    access_log off;
    client_body_temp_path $OUT/tmp/body;
    proxy_temp_path $OUT/tmp/proxy;
    fastcgi_temp_path $OUT/tmp/fastcgi;
    uwsgi_temp_path $OUT/tmp/uwsgi;
    scgi_temp_path $OUT/tmp/scgi;
    ssl_session_cache shared:bench:10m;
    root $OUT/www;
    server {
        listen 127.0.0.1:$TLS_PORT ssl;
        ssl_certificate $OUT/origin.crt;
        ssl_certificate_key $OUT/origin.key;
    }
}
CONF
chmod 777 tmp
nginx -p "$OUT" -c "$OUT/nginx.conf" -e "$OUT/nginx-error.log" >nginx.out 2>&1 &
PIDS+=($!)
wait_listening "$TLS_PORT"

"$HANDOFF" ca init "$OUT/proxyca" >ca-init.log 2>&1
printf '<ssl-intercept>\n    ssl.forward_proxy(https)\n<proxy>\n    ALLOW\n' >policy.cpl

run() { # mode -> prints per_sec
    local mode=$1 port admin pid line
    port=$(free_port)
    admin=$(free_port)
    cat >"handoff-$mode.conf" <<CONF
[proxy]
listen = 127.0.0.1:$port
workers = auto
[tls]
ca_cert = proxyca/ca.crt
ca_key = proxyca/ca.key
upstream_ca_file = $OUT/ca.crt
check_revocation = $mode
[policy]
file = policy.cpl
default = allow
[admin]
listen = 127.0.0.1:$admin
[log]
access_log = off
level = error
CONF
    "$HANDOFF" -c "handoff-$mode.conf" >"handoff-$mode.out" 2>&1 &
    pid=$!
    wait_listening "$port"
    # Warm-up: the first check asks the responder, later ones find the status cached.
    "$OUT/loadgen" tls-rate --proxy "127.0.0.1:$port" --origin "127.0.0.1:$TLS_PORT" \
        --sni bench.test --concurrency 4 --secs 1 --bytes "$BYTES" >/dev/null 2>&1 || true
    line=$("$OUT/loadgen" tls-rate --proxy "127.0.0.1:$port" --origin "127.0.0.1:$TLS_PORT" \
        --sni bench.test --concurrency "$CONCURRENCY" --secs "$SECS" --bytes "$BYTES" \
        --cpu-pids "$pid" 2>>loadgen.err)
    echo "$mode $line" >>runs.txt
    if [[ $mode == auto ]]; then
        curl -s "http://127.0.0.1:$admin/metrics" | grep -E '^handoff_revocation_(checks_total|cache_hits)' \
            >>"metrics-auto.txt" || true
    fi
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    echo "$line" | sed -n 's/.*per_sec=\([0-9.]*\).*/\1/p'
}

median() {
    tr ' ' '\n' | grep -v '^$' | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'
}

# MODES=... compares other modes too (e.g. "no crl auto"); the ratio is the last to the first.
read -ra MODES <<<"${MODES:-no auto}"
declare -A VALUES
for ((r = 1; r <= ROUNDS; r++)); do
    for mode in "${MODES[@]}"; do
        VALUES[$mode]+=" $(run "$mode")"
    done
    echo "round $r:$(for mode in "${MODES[@]}"; do printf ' %s:%s' "$mode" "${VALUES[$mode]}"; done)" >&2
done
echo "new intercepted connections/s, median of $ROUNDS x ${SECS}s, $CONCURRENCY clients:"
for mode in "${MODES[@]}"; do
    printf '  check_revocation = %-5s %s\n' "$mode" "$(echo "${VALUES[$mode]}" | median)"
done
first=$(echo "${VALUES[${MODES[0]}]}" | median)
last=$(echo "${VALUES[${MODES[-1]}]}" | median)
awk -v a="$last" -v n="$first" -v l="${MODES[-1]}" -v f="${MODES[0]}" \
    'BEGIN { printf "  ratio %s/%s %.3f\n", l, f, a / n }'
echo "proxy CPU per connection (us), median:"
for mode in "${MODES[@]}"; do
    printf '  check_revocation = %-5s %s\n' "$mode" \
        "$(sed -n "s/^$mode .*cpu_us_per_op=\([0-9.]*\).*/\1/p" runs.txt | median)"
done
echo "revocation metrics of the last auto run:"
tail -n 20 metrics-auto.txt | sed 's/^/  /'
echo "(files in $OUT)"
