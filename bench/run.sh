#!/usr/bin/env bash
# The whole bench in one command: build the release binaries, install
# nginx-light if nginx is missing, seed the Docker images for the gate, raise
# the fd limit, and run `bench` with the load generator and the servers on
# separate CPUs. Extra arguments go to `bench` (see `target/release/bench --help`);
# with `--litellm`, bench/litellm/setup.sh runs first.
# All load goes to 127.0.0.1 or the project's own containers.
set -euo pipefail
cd "$(dirname "$0")/.."

have_nginx() { command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; }
if ! have_nginx; then
    echo "run.sh: nginx missing; installing nginx-light" >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get install -y nginx-light || { $SUDO apt-get update && $SUDO apt-get install -y nginx-light; }
    # The package may start a system nginx on port 80; the bench runs its own.
    $SUDO systemctl stop nginx >/dev/null 2>&1 || $SUDO service nginx stop >/dev/null 2>&1 || true
fi

# LiteLLM (the optional peer) only when asked for: the venv is ~750 MB.
for arg in "$@"; do
    if [ "$arg" = --litellm ]; then
        bash bench/litellm/setup.sh
        break
    fi
done

# Images for `harness validate` (also builds goproxy and mock-upstream).
bash scripts/seed-images.sh
cargo build --release --locked -p proxy -p mock-upstream -p bench
# The gate figures need the harness; if it does not build (work in progress in
# a shared checkout), use the last built one, or skip the gate figures.
if ! cargo build --release --locked -p harness; then
    if [ -x target/release/harness ]; then
        echo "run.sh: warning: harness does not build; using the existing target/release/harness" >&2
    else
        echo "run.sh: warning: no harness binary; the gate figures are skipped" >&2
        set -- --gate-runs 0 --rollback-runs 0 "$@"
    fi
fi

# 1024 streams through nginx + goproxy need ~4 fds per stream across processes.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 65536 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 8192 ]; then
    echo "run.sh: warning: fd limit $(ulimit -n) is low for 1024 streams" >&2
fi

# Load generator on CPU 0, every server (mock, goproxy, nginx) on the rest.
cpus=$(nproc)
if [ "$cpus" -ge 2 ] && command -v taskset >/dev/null 2>&1; then
    exec taskset -c 0 target/release/bench --server-cpus "1-$((cpus - 1))" "$@"
else
    exec target/release/bench "$@"
fi
