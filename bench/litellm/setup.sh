#!/usr/bin/env bash
# LiteLLM for the bench's optional peer (`bench --litellm`): a venv with
# `litellm[proxy]` at a pinned version. Idempotent: when the venv already holds
# that version (a marker written after a complete install), it only prints it.
#
#   bash bench/litellm/setup.sh            # venv in bench-results/litellm-venv
#   LITELLM_VENV=/some/dir bash bench/litellm/setup.sh
#
# Nothing it downloads is committed: bench-results/ is gitignored.
set -euo pipefail
cd "$(dirname "$0")/../.."

# Pinned so a run is comparable with the figures in bench/README.md and so a
# new upload cannot change what runs here unreviewed. 1.106.12 is the version
# verified with this bench (Python 3.11); the newest uploads (1.109.3, 1.110.2)
# need litellm-proxy(-extras) versions the reachable registry does not serve.
# 1.82.7, 1.82.8 and 1.107.0 are missing from the registry's version list
# (reported as compromised uploads): never pin those.
VERSION="${LITELLM_VERSION:-1.106.12}"
VENV="${LITELLM_VENV:-bench-results/litellm-venv}"
MARKER="$VENV/.bench-litellm-$VERSION"

if [ -f "$MARKER" ] && [ -x "$VENV/bin/litellm" ]; then
    echo "litellm $VERSION already installed in $VENV"
    exit 0
fi

PYTHON="${PYTHON:-python3}"
"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 10), sys.version' \
    || { echo "setup.sh: litellm needs Python >= 3.10 ($PYTHON is older)" >&2; exit 2; }
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
rm -f "$VENV"/.bench-litellm-*
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "litellm[proxy]==$VERSION"
installed=$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))')
[ "$installed" = "$VERSION" ] \
    || { echo "setup.sh: wanted litellm $VERSION, the venv holds $installed" >&2; exit 1; }
touch "$MARKER"
echo "litellm $installed installed in $VENV"
