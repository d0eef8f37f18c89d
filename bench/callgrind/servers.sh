# Sourced by the callgrind scripts: start goproxy or nginx under callgrind
# in front of a mock at 127.0.0.1:$MP, listening on 127.0.0.1:$GP, with
# scratch files in $D. nginx runs one worker (no master) with the bench's
# server block (buffering off, upstream keepalive, access log on); goproxy
# at RUST_LOG=info with the bench's config. Sets SPID to the server's pid.
# usage: start_under_callgrind BIN   (BIN a goproxy binary or nginx)
start_under_callgrind() {
  local bin=$1
  local cg=(valgrind --tool=callgrind --compress-strings=no --compress-pos=no
    --separate-threads=no --callgrind-out-file=$D/cg.out.%p)
  if [ "$(basename "$bin")" = nginx ]; then
    mkdir -p $D/logs
    cat > $D/nginx.conf <<J
worker_processes 1; master_process off; daemon off;
pid $D/nginx.pid; error_log $D/logs/error.log warn;
events { worker_connections 4096; }
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
    "${cg[@]}" "$bin" -c $D/nginx.conf -p $D 2>$D/server.log &
  else
    cat > $D/cfg.json <<J
{"port": $GP, "host": "127.0.0.1",
 "endpoints": [{"name": "bench-openai", "base_url": "http://127.0.0.1:$MP/v1/chat/completions", "api_key_env": ["BENCH_UPSTREAM_KEY"]},
               {"name": "bench-anthropic", "base_url": "http://127.0.0.1:$MP/v1/messages", "api_key_env": ["BENCH_UPSTREAM_KEY"]}],
 "models": [{"id": "bench-model", "name": "Bench model", "id_aliases": [], "type": "openai", "upstream": "bench", "upstream_model_id": "mock-model",
   "input_price_per_mtok": 1.0, "output_price_per_mtok": 2.0, "billing_multiplier": 1.0}]}
J
    PROXY_API_KEY=k BENCH_UPSTREAM_KEY=u RUST_LOG=info "${cg[@]}" "$bin" --config $D/cfg.json 2>$D/server.log &
  fi
  SPID=$!
  for _ in $(seq 300); do curl -s -o /dev/null http://127.0.0.1:$GP/health && return 0; sleep 0.2; done
  echo "the server did not answer on 127.0.0.1:$GP; see $D/server.log" >&2
  return 1
}

# Total instructions in the newest callgrind dump in $D.
dumped_ir() {
  local f
  f=$(ls -t $D/cg.out.*.1 2>/dev/null | head -1)
  [ -z "$f" ] && f=$(ls -t $D/cg.out.* | head -1)
  callgrind_annotate "$f" 2>/dev/null | grep -m1 "PROGRAM TOTALS" | awk '{gsub(",","",$1); print $1}'
}
