#!/usr/bin/env bash
# make run: netmaster in the foreground (REST on 127.0.0.1:9999, HTTPS :10000,
# OpenFlow on 127.0.0.1:6653 and over TLS on :6643, embedded store) and a netplugin
# for this machine beside it. The agent takes its host credential through the
# loopback door and moves br-int to ssl:127.0.0.1:6643 with it (no --controller).
# Ctrl-C stops both.
set -uo pipefail
cd "$(dirname "$0")/.."
STORE=${NETWEAVE_STORE:-sqlite:///var/lib/netweave/state.db}
VTEP=${NETWEAVE_VTEP_IP:-$(ip -4 route get 1.1.1.1 2>/dev/null | awk '{for(i=1;i<=NF;i++) if($i=="src"){print $(i+1); exit}}')}
VTEP=${VTEP:-127.0.0.1}
.venv/bin/netmaster --listen 127.0.0.1:9999 --of-port 6653 --store "$STORE" &
NM=$!
AG=
cleanup() { [ -n "$AG" ] && kill "$AG" 2>/dev/null; kill "$NM" 2>/dev/null; wait 2>/dev/null; }
trap cleanup INT TERM EXIT
for _ in $(seq 100); do curl -sf http://127.0.0.1:9999/version >/dev/null && break; sleep 0.1; done
.venv/bin/netplugin --netmaster http://127.0.0.1:9999 --vtep-ip "$VTEP" \
  --ovsdb unix:/var/run/openvswitch/db.sock --datapath auto &
AG=$!
wait "$NM"
