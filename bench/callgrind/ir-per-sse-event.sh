#!/bin/bash
# Instructions goproxy (or nginx) executes per relayed SSE event, counted by
# callgrind, in the shape of the bench's SSE CPU cell: many concurrent
# streams whose events arrive 10 ms apart, so one wake-up relays a few
# events (the per-request script's single stream relays one per wake-up).
# usage: bench/callgrind/ir-per-sse-event.sh {GOPROXY_BIN|nginx} [STREAMS] [SECONDS]
# e.g.   bench/callgrind/ir-per-sse-event.sh target/release/goproxy 32 3
# STREAMS (default 32) curl streams of 400 events 10 ms apart are opened;
# after 1 s the counters are zeroed, SECONDS (default 3) later dumped, and
# total Ir / (STREAMS x 100 x SECONDS) is printed: the events relayed in the
# window if the server under callgrind keeps up (32 streams do on the
# 2-core dev box; more may not). The servers are started by servers.sh.
# Needs valgrind, curl and target/release/mock-upstream.
# Scratch files go to /tmp/goproxy-cg-sse.
set -e
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/../.." && pwd)
BIN=$(realpath "$(command -v "$1" || echo "$1")"); N=${2:-32}; SECS=${3:-3}
NAME=$(basename "$BIN"); D=/tmp/goproxy-cg-sse/$NAME
rm -rf "$D"; mkdir -p "$D"
MP=$((21000 + RANDOM % 500)); GP=$((MP + 600))
$ROOT/target/release/mock-upstream --listen 127.0.0.1:$MP --chunks 400 --chunk-delay-ms 10 >$D/mock.log 2>&1 &
MPID=$!
SPID=
trap 'kill $SPID $MPID 2>/dev/null; wait 2>/dev/null' EXIT
. "$HERE/servers.sh"
start_under_callgrind "$BIN"
REQ='{"model":"bench-model","stream":true,"messages":[{"role":"user","content":"hi"}]}'
for i in $(seq $N); do
  curl -sN -o $D/out.$i -H 'authorization: Bearer k' -H 'content-type: application/json' \
    -d "$REQ" http://127.0.0.1:$GP/v1/chat/completions &
done
sleep 1
callgrind_control -z $SPID >/dev/null
sleep "$SECS"
callgrind_control -d $SPID >/dev/null
sleep 1
TOT=$(dumped_ir)
echo "$NAME Ir/event: $((TOT / (N * 100 * SECS)))  (total $TOT, $N streams x ${SECS}s at 100 events/s)"
