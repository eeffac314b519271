#pragma once
/// A profile of some training steps, taken by LibTorch's profiler (its Kineto API: CPU ops
/// everywhere, and on builds with Kineto the GPU kernels too), written as a Chrome trace
/// (chrome://tracing, ui.perfetto.dev) and summed per op.
///
///   Profiler profiler(device);
///   for (...) { RETORT_PHASE("forward"); ... }
///   auto profile = profiler.stop();
///   profile.write_chrome_trace(dir + "/trace.json");
///   for (auto& op : profile.ops()) ...        // self time per op name, longest first
#include <ATen/record_function.h>
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

/// Marks a phase of the training step (data, forward, backward, reduce, unscale, step,
/// metrics) until the end of the enclosing scope. Costs one flag check when no profiler runs.
#define RETORT_PHASE(name) RECORD_USER_SCOPE("retort::" name)

namespace retort::trainer {

/// One op name (or phase, or GPU kernel) over the profiled span.
struct ProfiledOp {
  std::string name;
  int64_t calls = 0;
  double total_ms = 0;  ///< from each call's start to its end, nested calls included
  double self_ms = 0;   ///< total less the calls nested in it on the same thread
  bool phase = false;   ///< a RETORT_PHASE mark
  bool device = false;  ///< a kernel (or copy) on the GPU
  /// A phase's name as RETORT_PHASE was given it ("forward"); "" for an op.
  std::string phase_name() const;
};

class Profile {
 public:
  /// Per op name: calls, total and self time; phases first (in the order they first ran),
  /// then ops by self time, longest first.
  std::vector<ProfiledOp> ops() const;
  /// Chrome's trace-event format: one complete event ("ph": "X") per call, phases and ops on
  /// their CPU thread's row, kernels on the GPU's.
  void write_chrome_trace(const std::string& path) const;
  size_t event_count() const { return events_.size(); }

 private:
  friend class Profiler;
  struct Event {
    std::string name;
    int64_t start_ns = 0, duration_ns = 0;
    uint64_t thread = 0;
    bool device = false;
  };
  std::vector<Event> events_;
};

/// LibTorch's profiler over this process, from construction to stop(). One at a time.
class Profiler {
 public:
  /// Starts profiling this process's ops, and on a CUDA device (on a build with Kineto) its
  /// kernels, after the work queued so far. Throws Error when LibTorch's profiler is busy.
  explicit Profiler(torch::Device device);
  /// Stops the profiler, after the work queued so far, and returns what it saw.
  Profile stop();
  /// Stops a profiler that stop() has not (what it saw is dropped).
  ~Profiler();
  Profiler(const Profiler&) = delete;
  Profiler& operator=(const Profiler&) = delete;

 private:
  torch::Device device_;
  bool running_ = true;
};

}  // namespace retort::trainer
