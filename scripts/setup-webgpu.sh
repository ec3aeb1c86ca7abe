#!/usr/bin/env bash
# Makes onnxruntime-node's bundled WebGPU provider usable on a Debian 12 (bookworm) machine
# WITHOUT a GPU, so test/unit/backend/webgpu.test.ts runs instead of skipping: Mesa 25's
# lavapipe (a Vulkan driver on the CPU) from Debian's bookworm-backports suite. Debian 12's
# own Mesa 22.3 lavapipe is rejected by Dawn ("No supported adapters").
# Slow (a software GPU), but real: it checks the WebGPU code paths for correctness.
# Idempotent; root only (or passwordless sudo); skips with a message anywhere else
# (not Debian 12, no apt-get, not root). Measured: ~11 s on the 2-core dev VM.
# Usage: bash scripts/setup-webgpu.sh
set -euo pipefail

log() { printf '[setup-webgpu] %s\n' "$*"; }
START=$SECONDS
SOURCES=/etc/apt/sources.list.d/bookworm-backports.sources

# Already there? (Mesa >= 23 lavapipe ICD installed)
mesa_version() { dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true; }
v=$(mesa_version)
if [[ -n "$v" && "${v%%.*}" =~ ^[0-9]+$ && "${v%%.*}" -ge 23 ]]; then
  log "mesa-vulkan-drivers $v already installed; nothing to do"
  exit 0
fi

if [[ ! -r /etc/os-release ]] || ! grep -q '^VERSION_CODENAME=bookworm' /etc/os-release; then
  log "skipped: this recipe is for Debian 12 (bookworm); elsewhere install a Mesa >= 23 Vulkan driver (lavapipe) or use a real GPU"
  exit 0
fi
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  if sudo -n true 2>/dev/null; then SUDO=(sudo -n); else
    log "skipped: needs root (or passwordless sudo) to add bookworm-backports and install mesa-vulkan-drivers"
    exit 0
  fi
fi
command -v apt-get >/dev/null || { log "skipped: no apt-get"; exit 0; }

if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  log "adding the bookworm-backports suite ($SOURCES)"
  printf '%s\n' 'Types: deb' 'URIs: http://deb.debian.org/debian' 'Suites: bookworm-backports' 'Components: main' \
    'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' | "${SUDO[@]}" tee "$SOURCES" >/dev/null
fi
log "apt-get update"
"${SUDO[@]}" apt-get update -q >/dev/null
log "installing mesa-vulkan-drivers from bookworm-backports"
DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -q -t bookworm-backports mesa-vulkan-drivers >/dev/null
log "mesa-vulkan-drivers $(mesa_version) installed in $((SECONDS - START)) s"
