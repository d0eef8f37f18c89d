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
# 2-core dev box; more may not). nginx runs one worker with the bench's
# server block. Needs valgrind, curl and target/release/mock-upstream.
# Scratch files go to /tmp/goproxy-cg-sse.
set -e
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/../.." && pwd)
BIN=$(realpath "$(command -v "$1" || echo "$1")"); N=${2:-32}; SECS=${3:-3}
NAME=$(basename "$BIN"); D=/tmp/goproxy-cg-sse/$NAME
rm -rf "$D"; mkdir -p "$D/logs"
MP=$((21000 + RANDOM % 500)); GP=$((MP + 600))
$ROOT/target/release/mock-upstream --listen 127.0.0.1:$MP --chunks 400 --chunk-delay-ms 10 >$D/mock.log 2>&1 &
MPID=$!
CG=(valgrind --tool=callgrind --compress-strings=no --compress-pos=no --callgrind-out-file=$D/cg.out.%p)
if [ "$NAME" = nginx ]; then
  cat > $D/nginx.conf <<J
worker_processes 1; master_process off; daemon off;
pid $D/nginx.pid; error_log $D/logs/error.log warn;
events { worker_connections 4096; }
http {
 client_body_temp_path $D/cb; proxy_temp_path $D/p; fastcgi_temp_path $D/f; uwsgi_temp_path $D/u; scgi_temp_path $D/s;
 sendfile on; tcp_nodelay on; keepalive_requests 1000000;
 access_log $D/logs/access.log;
 upstream b { server 127.0.0.1:$MP; keepalive 32; }
 server { listen 127.0.0.1:$GP;
  location = /health { return 200; }
  location / { proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection "";
   proxy_set_header Host \$host; proxy_set_header X-Real-IP \$remote_addr;
   proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for; proxy_set_header X-Forwarded-Proto \$scheme;
   proxy_buffering off; proxy_request_buffering off; } }
}
J
  "${CG[@]}" "$BIN" -c $D/nginx.conf -p $D 2>$D/server.log &
else
  cat > $D/cfg.json <<J
{"port": $GP, "host": "127.0.0.1",
 "endpoints": [{"name": "bench-openai", "base_url": "http://127.0.0.1:$MP/v1/chat/completions", "api_key_env": ["BENCH_UPSTREAM_KEY"]}],
 "models": [{"id": "bench-model", "name": "Bench model", "id_aliases": [], "type": "openai", "upstream": "bench", "upstream_model_id": "mock-model",
   "input_price_per_mtok": 1.0, "output_price_per_mtok": 2.0, "billing_multiplier": 1.0}]}
J
  PROXY_API_KEY=k BENCH_UPSTREAM_KEY=u RUST_LOG=info "${CG[@]}" "$BIN" --config $D/cfg.json 2>$D/server.log &
fi
SPID=$!
trap 'kill $SPID $MPID 2>/dev/null; wait 2>/dev/null' EXIT
for i in $(seq 300); do curl -s -o /dev/null http://127.0.0.1:$GP/health && break; sleep 0.2; done
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
F=$(ls -t $D/cg.out.*.1 | head -1)
TOT=$(callgrind_annotate $F 2>/dev/null | grep -m1 "PROGRAM TOTALS" | awk '{gsub(",","",$1); print $1}')
echo "$NAME Ir/event: $((TOT / (N * 100 * SECS)))  (total $TOT, $N streams x ${SECS}s at 100 events/s; file $F)"
