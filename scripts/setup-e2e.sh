#!/usr/bin/env bash
# Installs what the end-to-end tests (test/e2e) need and a fresh machine lacks:
#   - Debian packages: chromium (the browser playwright-core drives) and the headers
#     code-server's native modules build against, plus ripgrep;
#   - code-server 4.100.3 (VS Code 1.100.3; the last line that runs on Node 20) into
#     build/e2e/, so the repo's own node_modules stays untouched.
# Idempotent: a second run only checks and exits. Works offline when everything is
# already installed. Usage: bash scripts/setup-e2e.sh
set -euo pipefail

CODE_SERVER_VERSION=4.100.3
RIPGREP_CACHE_NAME=vscode-ripgrep-cache-1.15.11
RIPGREP_TARBALL=ripgrep-v13.0.0-10-x86_64-unknown-linux-musl.tar.gz
DEB_PACKAGES=(chromium libkrb5-dev libx11-dev libxkbfile-dev libsecret-1-dev pkg-config ripgrep)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="$ROOT/build/e2e"
START=$SECONDS

log() { printf '[setup-e2e] %s\n' "$*"; }

# 1. Debian packages (only the missing ones; apt-get as root or through passwordless sudo).
# VFFN_E2E_CHROMIUM=/path/to/chrome uses another Chromium-based browser (e.g. on Ubuntu,
# where the chromium package is only a snap wrapper) and skips Debian's chromium.
if [[ -n "${VFFN_E2E_CHROMIUM:-}" ]]; then
  [[ -x "$VFFN_E2E_CHROMIUM" ]] || { log "VFFN_E2E_CHROMIUM=$VFFN_E2E_CHROMIUM is not an executable"; exit 1; }
  DEB_PACKAGES=("${DEB_PACKAGES[@]/chromium/}")
fi
missing=()
for pkg in "${DEB_PACKAGES[@]}"; do
  [[ -n "$pkg" ]] || continue
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$pkg")
  fi
done
if ((${#missing[@]})); then
  SUDO=()
  [[ $(id -u) -eq 0 ]] || SUDO=(sudo -n)
  if command -v apt-get >/dev/null && { [[ ${#SUDO[@]} -eq 0 ]] || sudo -n true 2>/dev/null; }; then
    log "installing Debian packages: ${missing[*]}"
    "${SUDO[@]}" apt-get update -qq || log "apt-get update failed (offline?); trying the cached package lists"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    log "missing Debian packages: ${missing[*]}"
    log "install them as root: apt-get update && apt-get install -y ${missing[*]}"
    exit 1
  fi
else
  log "Debian packages present"
fi

# 2. code-server into build/e2e (skip when the pinned version is already there).
CS_PKG="$PREFIX/node_modules/code-server/package.json"
if [[ -f "$CS_PKG" ]] && [[ -x "$PREFIX/node_modules/.bin/code-server" ]] &&
   node -e "process.exit(require(process.argv[1]).version === process.argv[2] ? 0 : 1)" "$CS_PKG" "$CODE_SERVER_VERSION"; then
  log "code-server $CODE_SERVER_VERSION present in build/e2e ($((SECONDS - START)) s)"
  exit 0
fi

# @vscode/ripgrep's postinstall downloads rg from GitHub unless its cache already holds
# the tarball: seed the cache with Debian's rg.
TMP="${TMPDIR:-/tmp}"
CACHE="$TMP/$RIPGREP_CACHE_NAME"
if [[ ! -s "$CACHE/$RIPGREP_TARBALL" ]]; then
  log "seeding the ripgrep cache at $CACHE with /usr/bin/rg"
  mkdir -p "$CACHE"
  work="$(mktemp -d)"
  cp /usr/bin/rg "$work/rg"
  tar -czf "$CACHE/$RIPGREP_TARBALL.tmp" -C "$work" rg
  mv "$CACHE/$RIPGREP_TARBALL.tmp" "$CACHE/$RIPGREP_TARBALL"
  rm -rf "$work"
fi

log "installing code-server@$CODE_SERVER_VERSION into build/e2e (takes minutes: native modules compile)"
mkdir -p "$PREFIX"
[[ -f "$PREFIX/package.json" ]] || printf '{ "name": "vffn-e2e-tools", "private": true }\n' > "$PREFIX/package.json"
export npm_config_unsafe_perm=true npm_config_yes=true
npm install --prefix "$PREFIX" --no-save --no-audit --no-fund "code-server@$CODE_SERVER_VERSION"

if [[ ! -x "$PREFIX/node_modules/.bin/code-server" ]]; then
  log "code-server did not install: see the npm output above"
  exit 1
fi
log "done in $((SECONDS - START)) s"
