#!/usr/bin/env bash
# Installs the Debian packages rotbench needs, when missing. Idempotent, non-interactive.
# Usage: scripts/setup.sh [--test]   (--test also installs the optional test-only packages)
set -euo pipefail
pkgs=(build-essential meson ninja-build pkg-config
      libopenblas-dev liblapacke-dev libhdf5-dev libyaml-dev libjansson-dev
      libcmocka-dev libpcre2-dev gnuplot-nox)
# --test: h5py for the reference checks; clang and its sanitizer/libFuzzer runtimes for the fuzz stage
if [ "${1:-}" = "--test" ]; then pkgs+=(python3-h5py clang libclang-rt-dev); fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >&2
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
