#!/bin/bash
# Instructions goproxy executes per request, counted by callgrind (stable on
# a shared, loaded machine, unlike wall-clock figures).
# usage: bench/callgrind/ir-per-request.sh GOPROXY_BIN LABEL {small|big|sse}.json N
# e.g.   bench/callgrind/ir-per-request.sh target/release/goproxy after big.json 100
# With `nginx` as GOPROXY_BIN, the same for nginx (one worker, no master;
# the bench's server block: buffering off, upstream keepalive, access log
# on), to compare like with like.
# Needs valgrind, curl, python3 and target/release/mock-upstream (the
# servers are started by servers.sh). One
# keep-alive connection: 20 warm-up requests, counters zeroed, N requests,
# counters dumped; prints total Ir / N. Scratch files go to /tmp/goproxy-cg.
# CHUNK_DELAY_MS (default 0) spaces the mock's SSE events: at 0 they come
# in one read, at 2 each comes alone (one wake-up per event).
set -e
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/../.." && pwd)
BIN=$(realpath "$(command -v "$1" || echo "$1")"); LABEL=$2; BODY=$3; N=$4
W=/tmp/goproxy-cg; mkdir -p $W; (cd $W && python3 "$HERE/bodies.py")
MP=$((19000 + RANDOM % 500)); GP=$((MP+600))
D=$W/run-$LABEL; rm -rf $D; mkdir -p $D
$ROOT/target/release/mock-upstream --listen 127.0.0.1:$MP --chunks 50 --chunk-delay-ms ${CHUNK_DELAY_MS:-0} >$D/mock.log 2>&1 &
MPID=$!
SPID=
trap 'kill $SPID $MPID 2>/dev/null; wait 2>/dev/null' EXIT
cd $D
. "$HERE/servers.sh"
start_under_callgrind "$BIN"
URL=http://127.0.0.1:$GP/v1/chat/completions
args=(); for i in $(seq $N); do args+=($URL); done
curl -s -o /dev/null -H 'authorization: Bearer k' -H 'content-type: application/json' --data-binary @$W/$BODY "${args[@]:0:20}" >/dev/null
callgrind_control -z $SPID >/dev/null
curl -s -o $D/last.out -H 'authorization: Bearer k' -H 'content-type: application/json' --data-binary @$W/$BODY "${args[@]}" >/dev/null
callgrind_control -d $SPID >/dev/null
sleep 1
TOT=$(dumped_ir)
echo "$LABEL $BODY Ir/request: $((TOT / N))  (total $TOT over $N)"
