#!/bin/sh
# mitmproxy (Debian package) as a pure CONNECT tunnel: --ignore-hosts '.*' makes every
# CONNECT a TCP passthrough, so nothing is decrypted or parsed. Usage:
#   mitmproxy.sh PORT CONFDIR          (CONFDIR keeps mitmproxy's CA out of ~/.mitmproxy)
# configs/mitmproxy-intercept.sh is the intercepting variant used by the TLS part.
exec mitmdump --mode regular --listen-host 127.0.0.1 --listen-port "$1" \
    --set confdir="$2" --ignore-hosts '.*' --ssl-insecure -q
