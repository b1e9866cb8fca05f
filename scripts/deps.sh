#!/usr/bin/env bash
# Installs the system packages scrubber's build, tests and lab need, only those missing.
# Idempotent; safe to run on every `make`. Needs root (apt-get) when something is missing.
set -euo pipefail

BUILD_PKGS=(clang llvm libelf-dev libpcap-dev m4 pkg-config zlib1g-dev make gcc g++ libc6-dev)
LAB_PKGS=(iproute2 ethtool nftables tcpdump netsniff-ng hping3 dnsutils python3 curl procps kmod iputils-ping linux-libc-dev)

missing=()
for p in "${BUILD_PKGS[@]}" "${LAB_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "scrubber: missing packages: ${missing[*]} — run as root (or: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "scrubber: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  timeout 600 apt-get update -qq
  timeout 1200 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "scrubber: cargo not found; install a Rust toolchain (https://rustup.rs) and retry" >&2
  exit 1
fi
