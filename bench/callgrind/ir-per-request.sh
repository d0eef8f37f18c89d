#!/bin/bash
# Instructions goproxy executes per request, counted by callgrind (stable on
# a shared, loaded machine, unlike wall-clock figures).
# usage: bench/callgrind/ir-per-request.sh GOPROXY_BIN LABEL {small|big|sse}.json N
# e.g.   bench/callgrind/ir-per-request.sh target/release/goproxy after big.json 100
# With `nginx` as GOPROXY_BIN, the same for nginx (one worker, no master;
# the bench's server block: buffering off, upstream keepalive, access log
# on), to compare like with like.
# Needs valgrind, curl, python3 and target/release/mock-upstream. One
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
cat > $D/cfg.json <<J
{"port": $GP, "host": "127.0.0.1",
 "endpoints": [{"name": "bench-openai", "base_url": "http://127.0.0.1:$MP/v1/chat/completions", "api_key_env": ["BENCH_UPSTREAM_KEY"]},
               {"name": "bench-anthropic", "base_url": "http://127.0.0.1:$MP/v1/messages", "api_key_env": ["BENCH_UPSTREAM_KEY"]}],
 "models": [{"id": "bench-model", "name": "Bench model", "id_aliases": [], "type": "openai", "upstream": "bench", "upstream_model_id": "mock-model",
   "input_price_per_mtok": 1.0, "output_price_per_mtok": 2.0, "billing_multiplier": 1.0}]}
J
cd $D
CG=(valgrind --tool=callgrind --compress-strings=no --compress-pos=no --separate-threads=no --callgrind-out-file=$D/cg.out.%p)
if [ "$(basename "$BIN")" = nginx ]; then
  mkdir -p $D/logs
  cat > $D/nginx.conf <<J
worker_processes 1; master_process off; daemon off;
pid $D/nginx.pid; error_log $D/logs/error.log warn;
events { worker_connections 1024; }
http {
 client_body_temp_path $D/cb; proxy_temp_path $D/p; fastcgi_temp_path $D/f; uwsgi_temp_path $D/u; scgi_temp_path $D/s;
 sendfile on; tcp_nodelay on; keepalive_requests 1000000;
 access_log $D/logs/access.log;
 upstream b { server 127.0.0.1:$MP; keepalive 32; }
 server { listen 127.0.0.1:$GP; client_max_body_size 20m;
  location = /health { return 200; }
  location / { proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection "";
   proxy_set_header Host \$host; proxy_set_header X-Real-IP \$remote_addr;
   proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for; proxy_set_header X-Forwarded-Proto \$scheme;
   proxy_buffering off; proxy_request_buffering off; } }
}
J
  "${CG[@]}" "$BIN" -c $D/nginx.conf -p $D 2>$D/gp.log &
else
  PROXY_API_KEY=k BENCH_UPSTREAM_KEY=u RUST_LOG=info "${CG[@]}" $BIN --config $D/cfg.json 2>$D/gp.log &
fi
GPID=$!
for i in $(seq 300); do curl -s -o /dev/null http://127.0.0.1:$GP/health && break; sleep 0.2; done
URL=http://127.0.0.1:$GP/v1/chat/completions
args=(); for i in $(seq $N); do args+=($URL); done
curl -s -o /dev/null -H 'authorization: Bearer k' -H 'content-type: application/json' --data-binary @$W/$BODY "${args[@]:0:20}" >/dev/null
callgrind_control -z $GPID >/dev/null
curl -s -o $D/last.out -H 'authorization: Bearer k' -H 'content-type: application/json' --data-binary @$W/$BODY "${args[@]}" >/dev/null
callgrind_control -d $GPID >/dev/null
sleep 1
kill $GPID; wait $GPID 2>/dev/null || true; kill $MPID
F=$(ls -t $D/cg.out.*.1 2>/dev/null | head -1); [ -z "$F" ] && F=$(ls -t $D/cg.out.* | head -1)
TOT=$(callgrind_annotate $F 2>/dev/null | grep -m1 "PROGRAM TOTALS" | awk '{gsub(",","",$1); print $1}')
echo "$LABEL $BODY Ir/request: $((TOT / N))  (total $TOT over $N; file $F)"
