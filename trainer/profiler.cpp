#include "trainer/profiler.h"

#include <torch/csrc/autograd/profiler_kineto.h>

#include <algorithm>
#include <map>
#include <set>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "core/error.h"
#include "core/fs.h"

namespace retort::trainer {
namespace {

namespace tap = torch::autograd::profiler;
using torch::profiler::impl::ActivityType;
using torch::profiler::impl::ProfilerConfig;
using torch::profiler::impl::ProfilerState;

// LibTorch 2.x reports an event's times in nanoseconds (startNs), 1.13 in microseconds.
template <typename E>
auto start_ns(const E& e, int) -> decltype(static_cast<int64_t>(e.startNs())) {
  return static_cast<int64_t>(e.startNs());
}
template <typename E>
int64_t start_ns(const E& e, long) {
  return static_cast<int64_t>(e.startUs()) * 1000;
}
template <typename E>
auto duration_ns(const E& e, int) -> decltype(static_cast<int64_t>(e.durationNs())) {
  return static_cast<int64_t>(e.durationNs());
}
template <typename E>
int64_t duration_ns(const E& e, long) {
  return static_cast<int64_t>(e.durationUs()) * 1000;
}

const std::string kPhasePrefix = "retort::";
bool is_phase(const std::string& name) { return name.rfind(kPhasePrefix, 0) == 0; }

std::set<ActivityType> activities(bool cuda) {
  std::set<ActivityType> a{ActivityType::CPU};
  if (cuda) a.insert(ActivityType::CUDA);
  return a;
}

}  // namespace

std::string ProfiledOp::phase_name() const { return phase ? name.substr(kPhasePrefix.size()) : ""; }

Profiler::Profiler(torch::Device device) : device_(device) {
  const ProfilerConfig config(ProfilerState::KINETO);
  const auto kinds = activities(device.is_cuda());
  if (device.is_cuda()) torch::cuda::synchronize();
  try {
    tap::prepareProfiler(config, kinds);
    tap::enableProfiler(config, kinds);
  } catch (const c10::Error& e) {
    throw Error(std::string("profiler: LibTorch's profiler did not start: ") + e.what_without_backtrace());
  }
}

Profiler::~Profiler() {
  if (!running_) return;
  try {
    tap::disableProfiler();
  } catch (...) {  // a destructor must not throw; the profile was not wanted
  }
}

Profile Profiler::stop() {
  if (!running_) throw Error("profiler: stop() called twice");
  if (device_.is_cuda()) torch::cuda::synchronize();
  running_ = false;
  auto result = tap::disableProfiler();
  Profile p;
  for (const auto& e : result->events()) {
    Profile::Event ev;
    ev.name = e.name();
    ev.device = e.deviceType() != c10::DeviceType::CPU;
    ev.start_ns = start_ns(e, 0);
    ev.duration_ns = duration_ns(e, 0);
    // A kernel's row is its stream: kernels on one stream never overlap, on two they may.
    ev.thread = ev.device ? static_cast<uint64_t>(e.deviceResourceId()) : e.startThreadId();
    p.events_.push_back(std::move(ev));
  }
  std::sort(p.events_.begin(), p.events_.end(), [](const Profile::Event& a, const Profile::Event& b) {
    return a.start_ns != b.start_ns ? a.start_ns < b.start_ns : a.duration_ns > b.duration_ns;
  });
  return p;
}

std::vector<ProfiledOp> Profile::ops() const {
  // Self time: each event's duration less that of the events nested in it on its thread
  // (events_ is sorted by start, the enclosing one first).
  std::vector<int64_t> child_ns(events_.size(), 0);
  std::map<std::pair<bool, uint64_t>, std::vector<size_t>> open;  // (device, thread) -> stack
  for (size_t i = 0; i < events_.size(); ++i) {
    const auto& e = events_[i];
    auto& stack = open[{e.device, e.thread}];
    while (!stack.empty() && events_[stack.back()].start_ns + events_[stack.back()].duration_ns <= e.start_ns)
      stack.pop_back();
    if (!stack.empty()) child_ns[stack.back()] += e.duration_ns;
    stack.push_back(i);
  }
  std::vector<ProfiledOp> ops;
  std::unordered_map<std::string, size_t> index;
  for (size_t i = 0; i < events_.size(); ++i) {
    const auto& e = events_[i];
    auto [it, added] = index.emplace(e.name, ops.size());
    if (added) ops.push_back(ProfiledOp{e.name, 0, 0, 0, is_phase(e.name), e.device});
    auto& op = ops[it->second];
    ++op.calls;
    op.total_ms += static_cast<double>(e.duration_ns) / 1e6;
    op.self_ms += static_cast<double>(std::max<int64_t>(e.duration_ns - child_ns[i], 0)) / 1e6;
  }
  std::stable_sort(ops.begin(), ops.end(), [](const ProfiledOp& a, const ProfiledOp& b) {
    if (a.phase != b.phase) return a.phase;
    return !a.phase && a.self_ms > b.self_ms;
  });
  return ops;
}

void Profile::write_chrome_trace(const std::string& path) const {
  const int64_t t0 = events_.empty() ? 0 : events_.front().start_ns;
  auto trace = nlohmann::json::array();
  trace.push_back({{"ph", "M"}, {"name", "process_name"}, {"pid", 0}, {"args", {{"name", "CPU"}}}});
  trace.push_back({{"ph", "M"}, {"name", "process_name"}, {"pid", 1}, {"args", {{"name", "GPU"}}}});
  for (const auto& e : events_)
    trace.push_back({{"ph", "X"},
                     {"name", e.name},
                     {"cat", e.device           ? "kernel"
                             : is_phase(e.name) ? "phase"
                                                : "op"},
                     {"pid", e.device ? 1 : 0},
                     {"tid", e.thread},
                     {"ts", static_cast<double>(e.start_ns - t0) / 1e3},
                     {"dur", static_cast<double>(e.duration_ns) / 1e3}});
  write_file_atomic(path, nlohmann::json{{"traceEvents", trace}, {"displayTimeUnit", "ms"}}.dump());
}

}  // namespace retort::trainer
