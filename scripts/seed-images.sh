#!/usr/bin/env bash
# Builds every image the test stack (docker-compose.yml + docker-compose.test.yml) needs, without any container
# registry, and a throwaway TLS certificate so the stack also works by hand.
#
#   1. debian:bookworm-slim, if missing: a minbase rootfs made with
#      mmdebstrap from the machine's own Debian mirror (read from its apt
#      sources), loaded with `docker import`.
#   2. The release binaries, on the host (a bookworm host: same glibc).
#   3. goproxy:test, goproxy-mock-upstream:test, goproxy-nginx:test.
#   4. stack/tls/{fullchain,privkey}.pem for chat.trollllm.xyz, if missing.
#
# Idempotent and quick when everything exists (base image skipped, docker
# layer cache, cargo incremental). Environment:
#   SEED_SKIP_CARGO=1   use the binaries already in target/release
#   SEED_REBUILD_BASE=1 remake debian:bookworm-slim even if present
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

BASE_IMAGE=debian:bookworm-slim
GOPROXY_IMAGE=goproxy:test
MOCK_IMAGE=goproxy-mock-upstream:test
NGINX_IMAGE=goproxy-nginx:test
TLS_DIR=stack/tls
HOSTNAME_TLS=chat.trollllm.xyz

script_start=$SECONDS
step_start=$SECONDS
step() {
    step_start=$SECONDS
    printf '\n==> %s\n' "$*"
}
done_step() {
    printf '    done in %ss\n' "$((SECONDS - step_start))"
}
die() {
    printf 'seed-images: error: %s\n' "$*" >&2
    exit 1
}
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# The Debian mirror this machine's apt uses: deb822 sources first, then the
# one-line format. Never hard-coded: it differs between machines.
debian_mirror() {
    local f uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        uri=$(awk '/^URIs:/{print $2; exit}' "$f")
        if [ -n "$uri" ] && ! grep -q security <<<"$uri"; then
            printf '%s\n' "$uri"
            return 0
        fi
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        # deb [opts] URI suite components; skip deb-src, comments, security.
        uri=$(awk '$1 == "deb" {
                    i = 2; if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                    if ($i !~ /security/) { print $i; exit } }' "$f")
        if [ -n "$uri" ]; then
            printf '%s\n' "$uri"
            return 0
        fi
    done
    return 1
}

step "checking Docker"
docker info --format '{{.ServerVersion}}' >/dev/null 2>&1 \
    || die "the Docker daemon does not answer ('docker info' failed); start it first"
echo "    Docker Engine $(docker info --format '{{.ServerVersion}}')"

if [ "${SEED_REBUILD_BASE:-0}" != 1 ] && docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    step "$BASE_IMAGE already present, not rebuilt"
else
    step "making $BASE_IMAGE with mmdebstrap (no registry needed)"
    if ! command -v mmdebstrap >/dev/null 2>&1; then
        echo "    installing mmdebstrap"
        as_root apt-get update -qq || die "apt-get update failed"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null \
            || die "apt-get install mmdebstrap failed"
    fi
    mirror=$(debian_mirror) || die "no Debian mirror found in /etc/apt/sources.list{,.d/}"
    echo "    mirror: $mirror"
    workdir=$(mktemp -d)
    trap 'rm -rf "$workdir"' EXIT
    # minbase + path excludes for docs, man pages and locales: what the
    # official -slim image drops too. The dpkg options stay in the image,
    # so packages installed later by the Dockerfiles are trimmed as well;
    # docker-clean keeps apt's 80 MB binary caches out of image layers.
    as_root mmdebstrap --variant=minbase --quiet \
        --include=ca-certificates \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-include=/usr/share/locale/locale.alias' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/info/*' \
        --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
        --customize-hook='printf "%s\n" "Dir::Cache::pkgcache \"\";" "Dir::Cache::srcpkgcache \"\";" "APT::Install-Recommends \"false\";" >"$1"/etc/apt/apt.conf.d/docker-clean' \
        bookworm "$workdir/rootfs.tar" "$mirror" \
        || die "mmdebstrap failed (is $mirror reachable?)"
    docker import \
        --change 'CMD ["bash"]' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        "$workdir/rootfs.tar" "$BASE_IMAGE" >/dev/null \
        || die "docker import of the rootfs failed"
    rm -rf "$workdir"
    trap - EXIT
    done_step
fi

if [ "${SEED_SKIP_CARGO:-0}" = 1 ]; then
    step "SEED_SKIP_CARGO=1: using the binaries already in target/release"
else
    step "building release binaries (goproxy, mock-upstream)"
    cargo build --release --locked -p proxy -p mock-upstream \
        || die "cargo build --release failed"
    done_step
fi
for bin in goproxy mock-upstream; do
    [ -x "target/release/$bin" ] || die "target/release/$bin is missing; run cargo build --release -p proxy -p mock-upstream"
done

build_image() {
    local tag=$1 dockerfile=$2 context=$3
    step "building $tag from $dockerfile"
    local log
    # Output only on failure: the legacy builder prints a deprecation banner
    # on every build otherwise.
    if ! log=$(docker build -f "$dockerfile" -t "$tag" "$context" 2>&1); then
        printf '%s\n' "$log" | tail -n 30 >&2
        die "docker build of $tag failed (docker build -f $dockerfile -t $tag $context)"
    fi
    done_step
}
build_image "$GOPROXY_IMAGE" docker/goproxy.Dockerfile .
build_image "$MOCK_IMAGE" docker/mock-upstream.Dockerfile .
build_image "$NGINX_IMAGE" nginx/Dockerfile nginx

if [ -s "$TLS_DIR/fullchain.pem" ] && [ -s "$TLS_DIR/privkey.pem" ]; then
    step "$TLS_DIR already has a certificate, kept"
else
    step "writing a throwaway self-signed certificate for $HOSTNAME_TLS to $TLS_DIR"
    command -v openssl >/dev/null 2>&1 || die "openssl is needed to make the test certificate"
    mkdir -p "$TLS_DIR"
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -sha256 \
        -subj "/CN=$HOSTNAME_TLS" -addext "subjectAltName=DNS:$HOSTNAME_TLS" \
        -keyout "$TLS_DIR/privkey.pem" -out "$TLS_DIR/fullchain.pem" 2>/dev/null \
        || die "openssl could not make the certificate"
    chmod 600 "$TLS_DIR/privkey.pem"
    done_step
fi
# docker-compose.test.yml mounts certificates in Let's Encrypt's layout,
# where docker-compose.yml mounts /etc/letsencrypt.
LE_LIVE="stack/letsencrypt/live/$HOSTNAME_TLS"
mkdir -p "$LE_LIVE"
cp "$TLS_DIR/fullchain.pem" "$TLS_DIR/privkey.pem" "$LE_LIVE/"

printf '\n==> images\n'
for image in "$BASE_IMAGE" "$GOPROXY_IMAGE" "$MOCK_IMAGE" "$NGINX_IMAGE"; do
    printf '    %-28s %s\n' "$image" "$(docker image inspect --format '{{.Size}}' "$image" \
        | awk '{printf "%.0f MB", $1 / 1000 / 1000}')"
done
printf '\nseed-images: all done in %ss\n' "$((SECONDS - script_start))"
