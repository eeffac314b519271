#!/usr/bin/env bash
# The GPU end to end, in one run on a machine with one NVIDIA GPU and PyTorch (issue #8):
# build retort with CUDA + NCCL against the machine's LibTorch, run the GPU tests, train the
# distillation recipe in fp32 / fp16 (gradient scaler) / bf16 over NCCL, time retort's
# training step against PyTorch's in each precision and its NCCL all-reduce against
# ncclAllReduce, time a gpt of GPT-2 small's shape against PyTorch's with a profiled trace
# of one step of each (traces/), then run the whole test suite.
#
# Prepared as docs/GPU.md says, in a folder git ignores and the device call
# carries (.gpu): debs/ + env.sh (the libraries PyTorch's machine lacks), fmnist/ (the four
# Fashion-MNIST .gz files) and teacher/model.safetensors (a cnn_large trained by
# recipes/fmnist/teacher.yaml). Run from the checkout:
#   bench/gpu_check.sh            # writes summary.md and logs into $OUT (or /tmp/gpu-check)
# Each phase has a time limit so that a slow or failing one leaves the rest their turn; the
# whole suite (last) gets what is left of BUDGET seconds (default 520). PHASES picks phases
# (default: all of "gpu-tests train bench gpt nccl suite"; the build always runs); SUITE_REGEX
# narrows the suite to the tests it names, with their output.
set -uo pipefail
budget=${BUDGET:-520}
phases=" ${PHASES:-gpu-tests train bench gpt nccl suite} "
want() { [[ $phases == *" $1 "* ]]; }
out=${OUT:-/tmp/gpu-check}
mkdir -p "$out/logs"
t0=$(date +%s)
say() { echo "[$(($(date +%s) - t0)) s] $*" | tee -a "$out/summary.md"; }
# shellcheck disable=SC1091
rm -rf /tmp/devdeps  # unpacked afresh: a warm machine may hold an older set
source .gpu/env.sh .gpu/debs > "$out/logs/env.log" 2>&1
{
  echo '```'
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c 'import torch; print("PyTorch", torch.__version__, "CUDA", torch.version.cuda, "cuDNN", torch.backends.cudnn.version())'
  nvcc --version | tail -2 | head -1
  g++ --version | head -1
  cmake --version | head -1
  nproc
  echo '```'
} >> "$out/summary.md" 2>&1
mkdir -p /usr/share/datasets && cp -r .gpu/fmnist /usr/share/datasets/fashion-mnist

# 1. Build. C++17 first; a LibTorch that needs C++20 fails at its precompiled header.
configure() {
  cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release -DRETORT_WITH_CUDA=ON \
        -DCMAKE_CXX_STANDARD="$1" -DCMAKE_POLICY_VERSION_MINIMUM=3.5 -DCMAKE_PREFIX_PATH="$CMAKE_PREFIX_PATH" -DTorch_DIR="$TORCH_PREFIX/Torch" > "$out/logs/configure-$1.log" 2>&1
}
std=17
if ! { configure 17 && ninja -C build-cuda retort_pch > "$out/logs/pch-17.log" 2>&1; }; then
  say "C++17 configure or precompiled header failed (logs/pch-17.log); trying C++20"
  std=20; rm -rf build-cuda
  configure 20 && ninja -C build-cuda retort_pch > "$out/logs/pch-20.log" 2>&1 || say "C++20 failed too"
fi
grep -h "retort: MPI" "$out/logs/configure-$std.log" | tee -a "$out/summary.md"
timeout 330 ninja -C build-cuda -k 0 -j "$(nproc)" > "$out/logs/build.log" 2>&1
say "build (C++$std): exit $?; $(grep -c 'error:' "$out/logs/build.log") error lines"
grep -h -m 40 -B2 -A3 "error:" "$out/logs/build.log" | head -120 > "$out/build-errors.txt"
b=build-cuda

# 2. The GPU tests (those that skip without a GPU), then the distillation recipe on the GPU.
if want gpu-tests && [ -x $b/tests/amp/test_amp ]; then
  timeout 120 ctest --test-dir $b -R "Cuda|Nccl|nccl|Gpu" -j 4 --output-on-failure > "$out/logs/ctest-gpu.log" 2>&1
  say "GPU tests: $(grep -E 'tests passed|tests failed' "$out/logs/ctest-gpu.log")"
  grep -E "^ *[0-9]+/[0-9]+ Test" "$out/logs/ctest-gpu.log" | sed 's/^ *//' >> "$out/summary.md"
fi
teacher="distill.teacher.weights=.gpu/teacher/model.safetensors"
tmodel='distill.teacher.model={name: cnn, channels: [32, 64], convs_per_stage: 2, batch_norm: true, pool: flatten, hidden: [512], dropout: 0.3}'
if want train && [ -x $b/retort ]; then
  for p in "off bf16" "autocast fp16" "autocast bf16" "master bf16"; do
    read -r mode dtype <<< "$p"
    timeout 90 $b/retort train recipes/fmnist/distill.yaml trainer.max_epochs=1 trainer.progress=plain \
      ddp.backend=nccl amp.mode="$mode" amp.dtype="$dtype" "$teacher" "$tmodel" run.dir=/tmp/runs/distill-$mode-$dtype \
      > "$out/logs/train-$mode-$dtype.log" 2>&1
    say "distill 1 epoch, amp $mode $dtype: exit $? | $(grep -m1 -o 'backend [a-z]*, device [a-z:0-9]*' "$out/logs/train-$mode-$dtype.log") | $(grep -o 'done: .*samples/s)' "$out/logs/train-$mode-$dtype.log") | test $(grep '"kind":"eval"' /tmp/runs/distill-$mode-$dtype/metrics.jsonl 2>/dev/null | tail -1 | grep -o '"accuracy":[0-9.]*') | skipped $(grep -o '"skipped":[0-9]*' /tmp/runs/distill-$mode-$dtype/metrics.jsonl 2>/dev/null | tail -1)"
  done
  for r in student distill; do  # the distillation step's cost over the student's, fp32, no evaluation
    extra=(); [ $r = distill ] && extra=("$teacher" "$tmodel")
    timeout 60 $b/retort train recipes/fmnist/$r.yaml trainer.max_steps=400 trainer.eval=false trainer.progress=plain \
      "${extra[@]}" run.dir=/tmp/runs/cost-$r > "$out/logs/cost-$r.log" 2>&1
    say "step cost, $r fp32 400 steps: $(grep -o 'done: .*samples/s)' "$out/logs/cost-$r.log")"
  done
fi

# 3. retort's step vs PyTorch's (bench/reference/train_step.py), alternating, each precision;
#    the recipe's CNN at batch 128 and a wider one at batch 512 (compute-bound).
if want bench && [ -x $b/bench/step_bench ]; then
  echo "| model | batch | precision | retort samples/s | PyTorch samples/s | retort / PyTorch | retort GPU peak MiB | PyTorch GPU peak MiB |" >> "$out/summary.md"
  echo "|---|---|---|---|---|---|---|---|" >> "$out/summary.md"
  for shape in "small 128 32,64 512 100" "wide 512 128,256 1024 30"; do
    read -r name batch ch hid steps <<< "$shape"
    for p in "off bf16 fp32" "autocast fp16 fp16" "autocast bf16 bf16" "master bf16 bf16-master"; do
      read -r mode dtype label <<< "$p"
      args=(--batch "$batch" --channels "$ch" --hidden "$hid" --steps "$steps" --warmup 10 --device cuda)
      r=$(timeout 60 $b/bench/step_bench "${args[@]}" --amp "$mode" --dtype "$dtype" 2>> "$out/logs/bench.err")
      echo "$r" >> "$out/logs/bench.jsonl"
      py=""
      if [ "$mode" != master ]; then
        py=$(cd bench/reference && timeout 90 python3 train_step.py "${args[@]}" --amp "$mode" --dtype "$dtype" 2>> "$out/logs/bench.err")
        echo "$py" >> "$out/logs/bench.jsonl"
      fi
      python3 - "$name" "$batch" "$label" "$r" "$py" >> "$out/summary.md" <<'EOF'
import json, sys
name, batch, label, r, p = sys.argv[1:]
r = json.loads(r) if r.strip() else {}
p = json.loads(p) if p.strip() else {}
rs, ps = r.get("samples_per_s"), p.get("samples_per_s")
f = lambda v, k="{:.0f}": k.format(v) if v is not None else "-"
ratio = f"{rs / ps:.2f}" if rs and ps else "-"
print(f"| {name} | {batch} | {label} | {f(rs)} | {f(ps)} | {ratio} | {f(r.get('gpu_peak_mb'))} | {f(p.get('gpu_peak_mb'))} |")
EOF
    done
  done
  say "step benchmarks done"
fi

# 3b. A gpt of GPT-2 small's shape (12 layers, 768 wide, context 1024, GPT-2's vocabulary),
#     where the step is compute-bound: retort's step vs PyTorch's twin on one batch held in
#     memory (bench/reference/lm_train.py --fixed-batch), each precision, both clipping at 1.0;
#     one more step of each profiled, its Chrome trace in traces/.
if want gpt && [ -x $b/bench/step_bench ]; then
  mkdir -p "$out/traces"
  shape=(--dim 768 --heads 12 --context 1024 --vocab 50257 --batch 8 --steps 10 --warmup 3 --device cuda
         --profile --profile-steps 1)
  echo "| gpt 124M, batch 8 x 1024 | retort ms/step | PyTorch ms/step | PyTorch / retort time | retort GPU peak MiB |" >> "$out/summary.md"
  echo "|---|---|---|---|---|" >> "$out/summary.md"
  for p in "off bf16 fp32" "autocast fp16 fp16" "autocast bf16 bf16" "master bf16 bf16-master"; do
    read -r mode dtype label <<< "$p"
    r=$(timeout 120 $b/bench/step_bench --model gpt --depth 12 "${shape[@]}" --grad-clip 1 --amp "$mode" \
        --dtype "$dtype" --trace "$out/traces/retort-$label.json" 2>> "$out/logs/gpt.err")
    echo "$r" >> "$out/logs/gpt.jsonl"
    py=""
    if [ "$mode" != master ]; then
      py=$(cd bench/reference && timeout 120 python3 lm_train.py - --layers 12 "${shape[@]}" --fixed-batch \
           --amp "$mode" --dtype "$dtype" --trace "$out/traces/pytorch-$label.json" 2>> "$out/logs/gpt.err")
      echo "$py" >> "$out/logs/gpt.jsonl"
    fi
    python3 - "$label" "$r" "$py" >> "$out/summary.md" <<'EOF'
import json, sys
label, r, p = sys.argv[1:]
r = json.loads(r) if r.strip() else {}
p = json.loads(p) if p.strip() else {}
rs, ps = r.get("ms_per_step"), p.get("ms_per_step")
f = lambda v: f"{v:.1f}" if v is not None else "-"
print(f"| {label} | {f(rs)} | {f(ps)} | {f'{ps / rs:.2f}' if rs and ps else '-'} | {f(r.get('gpu_peak_mb'))} |")
EOF
  done
  gzip -f "$out"/traces/*.json 2> /dev/null
  say "gpt step benchmarks done (traces/)"
fi

# 4. retort's NCCL all-reduce vs ncclAllReduce called directly (world of one).
if want nccl && [ -x $b/bench/nccl_bench ]; then
  timeout 60 $b/bench/nccl_bench --mb 1,25,256 --iters 200 > "$out/logs/nccl.jsonl" 2>&1
  say "NCCL all-reduce, retort vs direct (world of one):"
  python3 - "$out/logs/nccl.jsonl" >> "$out/summary.md" <<'EOF'
import json, sys
print("| MiB | retort us/call | ncclAllReduce us/call | retort / direct |\n|---|---|---|---|")
for line in open(sys.argv[1]):
    try:
        r = json.loads(line)
    except ValueError:
        print("    " + line.rstrip()); continue
    print(f"| {r['mb']:g} | {r['retort_us']:.1f} | {r['direct_us']:.1f} | {r['retort_over_direct']:.2f} |")
EOF
fi

# 5. The whole suite, with what time is left.
left=$((budget - ($(date +%s) - t0)))
if want suite && [ -d $b/tests ] && [ $left -gt 30 ]; then
  timeout $left ctest --test-dir $b -j 12 --timeout 120 ${SUITE_REGEX:+-R "$SUITE_REGEX" --output-on-failure} \
    > "$out/logs/ctest-all.log" 2>&1
  say "whole suite: $(grep -E 'tests passed|tests failed' "$out/logs/ctest-all.log")"
  sed -n '/The following tests FAILED/,$p' "$out/logs/ctest-all.log" | head -60 >> "$out/summary.md"
  grep -E -A4 "Failure$|error: |C\+\+ exception|what\(\)|terminate|Test +#[0-9]+: .*(Failed|Exception|Timeout)" \
    "$out/logs/ctest-all.log" | head -400 > "$out/failures.txt"
fi
tar -czf "$out/logs.tar.gz" -C "$out" logs && rm -rf "$out/logs"
say "end"
