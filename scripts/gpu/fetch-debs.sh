#!/usr/bin/env bash
# Downloads the Debian packages listed in scripts/gpu/packages.txt (plus any names given)
# into DIR, for a GPU machine that has PyTorch but no package registry (docs/GPU.md).
# Run on a Debian machine, inside the checkout, into a folder git ignores:
#   echo /.gpu/ >> .git/info/exclude
#   scripts/gpu/fetch-debs.sh .gpu/debs && cp scripts/gpu/env.sh .gpu/
set -euo pipefail
dir=${1:?usage: scripts/gpu/fetch-debs.sh DIR [extra-package ...]}; shift
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$dir"; cd "$dir"
[ -n "$(ls /var/lib/apt/lists/ 2>/dev/null | grep -v lock)" ] || apt-get update -q >/dev/null
for p in $(grep -v '^#' "$here/packages.txt") "$@"; do
  ls "${p}"_*.deb >/dev/null 2>&1 || apt-get download "$p" >/dev/null 2>&1 || echo "fetch-debs: could not download $p" >&2
done
echo "fetch-debs: $(ls *.deb | wc -l) packages, $(du -sh . | cut -f1) in $dir"
