#!/usr/bin/env bash
# bf16 autocast against fp32 on a language-model recipe: the same run (seed, data, steps)
# trained in each precision, then both checkpoints evaluated in fp32 on the whole
# validation split. Prints a markdown table: loss and bits per byte of each, and the
# relative difference of the losses.
#   bench/lm_precision.sh [recipe] [steps] [build_dir] [threads]
# Needs the recipe's token files (README, "Language models").
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
recipe=${1:-recipes/text/lm_student.yaml}
steps=${2:-600}
build=${3:-$root/build}
threads=${4:-2}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for amp in off autocast; do
  (cd "$root" && "$build/retort" train "$recipe" trainer.max_steps="$steps" amp.mode="$amp" trainer.threads="$threads" \
     trainer.eval=false trainer.progress=off trainer.checkpoint_every=1000000 run.dir="$tmp/$amp" > /dev/null)
  (cd "$root" && "$build/retort" eval "$tmp/$amp" amp.mode=off data.eval_tokens=0 trainer.threads="$threads") > "$tmp/$amp.eval"
done
python3 - "$tmp" "$recipe" "$steps" <<'PY'
import re, sys
tmp, recipe, steps = sys.argv[1:]
def read(amp):
    text = open(f"{tmp}/{amp}.eval").read()
    loss = float(re.search(r"test loss ([0-9.]+)", text).group(1))
    bpb = re.search(r"bits per byte ([0-9.]+)", text)
    return loss, bpb.group(1) if bpb else "n/a"
(f_loss, f_bpb), (b_loss, b_bpb) = read("off"), read("autocast")
print(f"{recipe}, {steps} steps; evaluated in fp32 on the whole validation split")
print()
print("| trained in | eval loss | bits per byte |")
print("|---|---|---|")
print(f"| fp32 | {f_loss:.4f} | {f_bpb} |")
print(f"| bf16 autocast | {b_loss:.4f} | {b_bpb} |")
print()
print(f"bf16 vs fp32: {100 * (b_loss - f_loss) / f_loss:+.2f} % loss")
PY
