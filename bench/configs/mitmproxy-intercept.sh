#!/bin/sh
# mitmproxy (Debian package) intercepting every CONNECT, for bench/run.sh's TLS part. Usage:
#   mitmproxy-intercept.sh PORT CONFDIR ORIGIN_CA
# CONFDIR holds the CA that signs the minted leaves: mitmproxy makes an RSA one there on first
# start unless CONFDIR/mitmproxy-ca.pem (key and certificate) already exists. ORIGIN_CA is the
# CA that signed the origin's certificates; mitmproxy verifies the origin against it.
exec mitmdump --mode regular --listen-host 127.0.0.1 --listen-port "$1" \
    --set confdir="$2" --set ssl_verify_upstream_trusted_ca="$3" -q
