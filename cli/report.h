#pragma once
/// `retort report <run_dir> [<run_dir> ...] [--out report] [--warmup 3] [--repeats 20] [--threads 0] [--batch 256]
///                [key=value ...]`
/// Compares finished runs side by side (teacher, baseline student, distilled student):
/// parameters, weights size, test accuracy, latency per batch and per sample, and the
/// peak memory of a forward pass; prints a markdown table and writes <out>/report.md and
/// <out>/report.json.
///   retort report outputs/fmnist-teacher/... outputs/fmnist-student/... outputs/fmnist-distill/...
///
/// Each run is read from its newest checkpoint (or a checkpoint directory given directly):
/// the model is built from the checkpoint's config.yaml `model:` section, key=value
/// overrides apply to every run's config (e.g. data.root=...). Latency: in eval mode,
/// without gradients, under the run's amp settings, every run with the same `threads`
/// (0: the cores available) on the same batch of `batch` test images (at most the split):
/// `warmup` untimed forwards, then the median of `repeats` timed ones; "speed vs teacher"
/// is the ratio of latencies per sample. Memory: "weights" is the bytes of parameters and
/// buffers; "peak forward" is the growth of the process's peak resident set (VmHWM, reset
/// through /proc/self/clear_refs before each run) during those forwards, i.e. activations
/// and workspace of one batch over the resident weights (n/a where the kernel refuses the
/// reset).
#include <string>
#include <vector>

namespace retort::launch {
class World;
}

namespace retort::cli {

int report(launch::World& world, const std::vector<std::string>& args);

}  // namespace retort::cli
