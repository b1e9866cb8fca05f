#!/usr/bin/env bash
# Packs what the lab benchmarks need to run on a Linux machine where nothing can be installed
# (a borrowed bench host): the scrubber binaries and the system tools the lab calls (ip, tc,
# ethtool, nft, sysctl, mount, mountpoint, kill), each with its shared libraries and this
# machine's dynamic loader, so they run whatever the host's own libraries are.
#
#   scripts/bundle-lab-tools.sh OUT [SCRUBBER_BIN_DIR]
#   # on the host, from a checkout (for configs/lab.toml), as root:
#   PATH=OUT/bin:$PATH OUT/bin/scrubber lab bench --throughput --queues 8 --sizes 64
#
# SCRUBBER_BIN_DIR defaults to target/release. The lab's kernel needs are unchanged: veth,
# network namespaces, XDP and AF_XDP sockets, nf_tables. The lab benchmarks' XDP sink is built
# into the binary, so no compiler is needed there.
set -euo pipefail

out=${1:?usage: $0 OUT [SCRUBBER_BIN_DIR]}
bins=${2:-target/release}
tools=(ip tc ethtool nft sysctl mount mountpoint kill)

rm -rf "$out"
mkdir -p "$out/bin" "$out/lib" "$out/real"
for b in scrubber scrubctl; do
  [ -x "$bins/$b" ] || { echo "no $bins/$b: build it first (cargo build --release -p scrubber)" >&2; exit 1; }
  cp "$bins/$b" "$out/bin/"
  strip "$out/bin/$b" 2>/dev/null || true
done
for t in "${tools[@]}"; do
  path=$(PATH=/usr/sbin:/usr/bin:/sbin:/bin type -P "$t") || { echo "no $t here (scripts/deps.sh installs it)" >&2; exit 1; }
  cp "$path" "$out/real/$t"
  ldd "$path" | grep -o '/[^ ]*\.so[^ ]*' | while read -r lib; do cp -L "$lib" "$out/lib/"; done
  # Each tool runs through the bundled loader with the bundled libraries only; the path is found
  # from the wrapper's own, so the bundle can live anywhere.
  cat > "$out/bin/$t" <<WRAP
#!/bin/sh
d=\${0%/*}/..
exec "\$d/lib/ld-linux-x86-64.so.2" --library-path "\$d/lib" "\$d/real/$t" "\$@"
WRAP
  chmod +x "$out/bin/$t"
done
cp -L /lib64/ld-linux-x86-64.so.2 "$out/lib/"
echo "bundle in $out ($(du -sh "$out" | cut -f1)); on the host: PATH=$out/bin:\$PATH"
