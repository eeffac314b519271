#!/usr/bin/env bash
# fp32 against int8 for trained runs: each run quantized by `retort quantize` (dynamic, and
# static with CALIBRATION), then `retort report` on all of them at batch 1 and 256, on 1 and
# 2 threads, amp off: accuracy (language models: bits per byte) over the whole test split, the size
# of model.safetensors, the median forward latency; ratios against the fp32 run.
#   [OUT=dir CALIBRATION=entropy REPEATS=20 RETORT=build/retort] bench/quant_bench.sh <run> [run ...]
# Writes $OUT/<run>-{dynamic,static}/ (the int8 runs) and $OUT/<run>-b<batch>-t<threads>/ (a
# report per run and setting), each kept for a rerun, and prints the markdown table of
# bench/RESULTS.md "Quantization".
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
retort=${RETORT:-$root/build/retort}
out=${OUT:-$root/outputs/bench/quant}
calibration=${CALIBRATION:-entropy}
repeats=${REPEATS:-20}
[[ $# -ge 1 ]] || { echo "usage: bench/quant_bench.sh <run> [run ...]" >&2; exit 2; }
mkdir -p "$out"
names=()
for source in "$@"; do
  name=$(basename "$source")
  names+=("$name")
  for method in dynamic static; do
    target="$out/$name-$method"
    if [[ ! -d $target/checkpoints ]]; then
      "$retort" quantize "$source" quant.method=$method quant.calibration="$calibration" run.dir="$target" \
        > "$target.log" || { cat "$target.log" >&2; exit 1; }
    fi
  done
  for batch in 1 256; do
    for threads in 1 2; do
      [[ -f $out/$name-b$batch-t$threads/report.json ]] ||
        "$retort" report "$source" "$out/$name-dynamic" "$out/$name-static" data.eval_tokens=0 amp.mode=off \
          --batch $batch --threads $threads --repeats "$repeats" --warmup 3 --sample-tokens 0 \
          --out "$out/$name-b$batch-t$threads" > /dev/null
    done
  done
done
/usr/bin/python3 - "$out" "$calibration" "${names[@]}" <<'PY'
import json, os, sys
out, calibration, names = sys.argv[1], sys.argv[2], sys.argv[3:]
configs = [(b, t) for b in (1, 256) for t in (1, 2)]
def size(row): return os.path.getsize(os.path.join(row["checkpoint"], "model.safetensors"))
print("| run | quantization | quality | vs fp32 | model.safetensors | vs fp32 | "
      + " | ".join(f"batch {b}, {t} thr ms" for b, t in configs) + " |")
print("|---" * (6 + len(configs)) + "|")
for name in names:
    reports = {c: json.load(open(f"{out}/{name}-b{c[0]}-t{c[1]}/report.json"))["runs"] for c in configs}
    rows = reports[configs[0]]
    base = rows[0]
    for j, what in enumerate(("fp32", "int8 dynamic", f"int8 static, {calibration}")):
        r = rows[j]
        if r.get("language_model"):
            quality = f'{r["bpb"]:.4f} bpb'
            delta = f'{100 * (r["test_loss"] / base["test_loss"] - 1):+.2f} % loss'
        else:
            quality = f'{100 * r["test_accuracy"]:.2f} %'
            delta = f'{100 * (r["test_accuracy"] - base["test_accuracy"]):+.2f} points'
        cells = [name, what, quality, "" if j == 0 else delta,
                 f"{size(r) / 1e6:.3f} MB", "" if j == 0 else f"{size(r) / size(base):.3f}x"]
        for c in configs:
            ms, ms0 = reports[c][j]["latency_ms_per_batch"], reports[c][0]["latency_ms_per_batch"]
            cells.append(f"{ms:.3f}" + ("" if j == 0 else f" ({ms / ms0:.2f}x)"))
        print("| " + " | ".join(cells) + " |")
PY
