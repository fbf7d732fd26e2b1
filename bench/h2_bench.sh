#!/bin/bash
# HTTP/2 through interception (README "HTTP/2", issue 14): h2load, 32 clients x 10 streams,
# against an nginx h2 origin, through
#   handoff (h2 on both legs), handoff with HTTP/1.1 keep-alive (h2load --h1, one request in
#   flight per connection), and mitmproxy (which intercepts h2 too).
# h2load cannot use a proxy, so it talks to connect_relay (bench/connect_relay.c), which relays
# each connection through the proxy's CONNECT: the relay's cost is the same in every row.
# Also: the proxy's memory per idle h2 client connection (RSS before and after IDLE idle
# connections). Everything on 127.0.0.1; every process started here is stopped by PID.
#
#   bench/h2_bench.sh            REQUESTS=100000 MITM_REQUESTS=20000 IDLE=200 HANDOFF=...
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
HANDOFF=${HANDOFF:-$HERE/../build/proxy/handoff}
REQUESTS=${REQUESTS:-100000}
MITM_REQUESTS=${MITM_REQUESTS:-20000}
CLIENTS=${CLIENTS:-32}
STREAMS=${STREAMS:-10}
IDLE=${IDLE:-200}
OUT=${OUT:-$(mktemp -d /tmp/handoff-h2bench.XXXXXX)}
for tool in nginx h2load openssl cc python3; do
    command -v "$tool" >/dev/null || { echo "h2_bench: $tool is missing" >&2; exit 1; }
done

pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_port() {
    for _ in $(seq 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "h2_bench: nothing listens on $1" >&2
    return 1
}

cd "$OUT"
cc -O2 -Wall -Wextra -Werror -pthread -o connect_relay "$HERE/connect_relay.c"

# An origin CA and a leaf for localhost.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=h2-bench-ca \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign \
    -keyout ca.key -out ca.crt 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
    -keyout origin.key -out origin.csr 2>/dev/null
printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n' >origin.ext
openssl x509 -req -in origin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
    -extfile origin.ext -out origin.crt 2>/dev/null

mkdir -p www tmp
head -c 1024 /dev/urandom >www/small
ORIGIN_PORT=$(free_port)
cat >nginx.conf <<CONF
$( [ "$(id -u)" = 0 ] && echo "user root;" )
worker_processes 1;
daemon off;
pid $OUT/nginx.pid;
error_log $OUT/nginx-error.log error;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $OUT/tmp/body;
    proxy_temp_path $OUT/tmp/proxy;
    fastcgi_temp_path $OUT/tmp/fastcgi;
    uwsgi_temp_path $OUT/tmp/uwsgi;
    scgi_temp_path $OUT/tmp/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    root $OUT/www;
    server {
        listen 127.0.0.1:$ORIGIN_PORT ssl http2;
        ssl_certificate $OUT/origin.crt;
        ssl_certificate_key $OUT/origin.key;
    }
}
CONF
nginx -p "$OUT" -c "$OUT/nginx.conf" &
pids+=($!)
wait_port "$ORIGIN_PORT"

# handoff: interception with proxy handoff, no access log, no admin listener.
"$HANDOFF" ca init "$OUT/handoff-ca" >/dev/null
HANDOFF_PORT=$(free_port)
printf '<ssl-intercept>\n  ssl.forward_proxy(yes)\n<proxy>\n  ALLOW\n' >policy.cpl
cat >handoff.conf <<CONF
[proxy]
listen = 127.0.0.1:$HANDOFF_PORT
workers = auto
[tls]
ca_cert = $OUT/handoff-ca/ca.crt
ca_key = $OUT/handoff-ca/ca.key
upstream_ca_file = $OUT/ca.crt
http2 = yes
[policy]
file = $OUT/policy.cpl
default = allow
[admin]
listen =
[log]
access_log = off
level = warn
CONF
"$HANDOFF" -c "$OUT/handoff.conf" >handoff.log 2>&1 &
HANDOFF_PID=$!
pids+=($HANDOFF_PID)
wait_port "$HANDOFF_PORT"

# Memory per idle h2 client connection, first, on the fresh proxy: RSS of handoff before and
# after IDLE connections that did their handshake and one request, then stay open (closed
# again when the measuring script ends).
rss() { awk '/^VmRSS/ {print $2}' "/proc/$HANDOFF_PID/status"; }
BEFORE=$(rss)
python3 - "$HANDOFF_PORT" "$ORIGIN_PORT" "$IDLE" "$OUT/handoff-ca/ca.crt" "$OUT/rss_after" "$HANDOFF_PID" <<'PY'
import socket, ssl, sys, time
proxy, origin, count, ca, out, pid = sys.argv[1:]
ctx = ssl.create_default_context(cafile=ca)
ctx.set_alpn_protocols(["h2"])
held = []
get = bytes.fromhex("8287") + b"\x00\x0a:authority\x09localhost" + b"\x00\x05:path\x06/small"
for _ in range(int(count)):
    s = socket.create_connection(("127.0.0.1", int(proxy)))
    s.sendall(f"CONNECT localhost:{origin} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += s.recv(1)
    t = ctx.wrap_socket(s, server_hostname="localhost")
    t.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\0\0\0\4\0\0\0\0\0" +
              len(get).to_bytes(3, "big") + b"\x01\x05\0\0\0\x01" + get)
    t.recv(65536)
    held.append(t)
time.sleep(2)
with open(f"/proc/{pid}/status") as f:
    rss = next(l.split()[1] for l in f if l.startswith("VmRSS"))
open(out, "w").write(rss)
PY
AFTER=$(cat rss_after)
MEMORY_LINE="memory per idle h2 client connection (with its h2 origin connection): $(( (AFTER - BEFORE) / IDLE )) KiB ($IDLE connections, RSS $BEFORE -> $AFTER KiB, measured on the fresh proxy before the load)"

relay() { # relay PROXY_PORT: sets RELAY_PORT (no subshell: the EXIT trap would run in it)
    RELAY_PORT=$(free_port)
    ./connect_relay "$RELAY_PORT" "$1" "localhost:$ORIGIN_PORT" &
    pids+=($!)
    wait_port "$RELAY_PORT"
}

# h2load's summary: "finished in 2.01s, 49751.24 req/s, ..." and "requests: ... N succeeded".
run_h2load() { # label requests args...
    local label=$1 n=$2
    shift 2
    local out
    out=$(h2load -n "$n" -c "$CLIENTS" "$@" 2>&1) || true
    echo "$out" >>h2load.log
    local rps ok
    rps=$(echo "$out" | sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p')
    ok=$(echo "$out" | sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p')
    printf '| %s | %s | %s of %s |\n' "$label" "${rps:-failed}" "${ok:-0}" "$n"
    RESULT=${rps:-0}
}

relay "$HANDOFF_PORT"
R_HANDOFF=$RELAY_PORT
echo "| through | requests/s | succeeded |"
echo "|---|---:|---:|"
run_h2load "handoff, h2 both legs (${CLIENTS}x${STREAMS})" "$REQUESTS" -m "$STREAMS" \
    "https://localhost:$R_HANDOFF/small"
H2=$RESULT
run_h2load "handoff, HTTP/1.1 keep-alive (${CLIENTS}x1, --h1)" "$REQUESTS" --h1 \
    "https://localhost:$R_HANDOFF/small"
H1=$RESULT

MITM=0
if command -v mitmdump >/dev/null; then
    MITM_PORT=$(free_port)
    mkdir -p mitm
    mitmdump --mode regular --listen-host 127.0.0.1 --listen-port "$MITM_PORT" \
        --set confdir="$OUT/mitm" --set ssl_verify_upstream_trusted_ca="$OUT/ca.crt" -q \
        >mitm.log 2>&1 &
    pids+=($!)
    wait_port "$MITM_PORT"
    relay "$MITM_PORT"
    R_MITM=$RELAY_PORT
    run_h2load "mitmproxy $(mitmdump --version 2>/dev/null | sed -n 's/^Mitmproxy: *//p'), h2 (${CLIENTS}x${STREAMS})" \
        "$MITM_REQUESTS" -m "$STREAMS" "https://localhost:$R_MITM/small"
    MITM=$RESULT
fi

python3 - "$H2" "$H1" "$MITM" <<'PY'
import sys
h2, h1, mitm = (float(x) for x in sys.argv[1:])
print(f"\nh2 / HTTP/1.1 keep-alive through handoff: {h2 / h1:.2f}x" if h1 else "")
print(f"handoff h2 / mitmproxy h2: {h2 / mitm:.1f}x" if mitm else "mitmproxy: skipped")
PY

echo
echo "$MEMORY_LINE"
echo "(details: $OUT)"
