#include "amp/grad_scaler.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <tuple>

#include "core/error.h"
#include "core/text.h"
#include "launch/communicator.h"

namespace retort::amp {
namespace {

// Inf/NaN anywhere in `grads` (all on the CPU), as a [1] float flag, without a host sync.
// aminmax reads each gradient once and allocates nothing of its size; NaN propagates into
// both results and +-inf into one, so the check is exact (a sum could overflow on finite
// values).
torch::Tensor cpu_non_finite(const std::vector<torch::Tensor>& grads) {
  std::vector<torch::Tensor> extremes;
  extremes.reserve(2 * grads.size());
  for (const auto& g : grads) {
    if (g.numel() == 0) continue;
    auto mm = torch::aminmax(g);
    extremes.push_back(std::get<0>(mm).to(torch::kFloat).reshape({1}));
    extremes.push_back(std::get<1>(mm).to(torch::kFloat).reshape({1}));
  }
  if (extremes.empty()) return torch::zeros({1}, torch::kFloat);
  return torch::isfinite(torch::cat(extremes)).all().logical_not().to(torch::kFloat).reshape({1});
}

// Per-gradient non-finite flags, for the diagnosis only (runs on skipped steps).
std::vector<bool> non_finite_flags(const std::vector<torch::Tensor>& grads) {
  std::vector<torch::Tensor> flags;
  flags.reserve(grads.size());
  for (const auto& g : grads) flags.push_back(torch::isfinite(g).all().logical_not().reshape({1}).cpu());
  std::vector<bool> out;
  if (flags.empty()) return out;
  auto all = torch::cat(flags);
  auto acc = all.accessor<bool, 1>();
  for (int64_t i = 0; i < all.size(0); ++i) out.push_back(acc[i]);
  return out;
}

void check_positive(const char* key, double v) {
  if (!(v > 0.0) || !std::isfinite(v)) {
    throw ConfigError(std::string("amp.scaler.") + key + ": expected a positive finite number, got " + format_number(v));
  }
}

}  // namespace

void GradScalerOptions::validate() const {
  check_positive("init_scale", init_scale());
  check_positive("min_scale", min_scale());
  check_positive("max_scale", max_scale());
  if (!(growth_factor() > 1.0) || !std::isfinite(growth_factor())) {
    throw ConfigError("amp.scaler.growth_factor: expected a finite number > 1, got " + format_number(growth_factor()));
  }
  if (!(backoff_factor() > 0.0 && backoff_factor() < 1.0)) {
    throw ConfigError("amp.scaler.backoff_factor: expected a number in (0, 1), got " + format_number(backoff_factor()));
  }
  if (growth_interval() < 1) {
    throw ConfigError("amp.scaler.growth_interval: expected >= 1, got " + std::to_string(growth_interval()));
  }
  if (hysteresis() < 1) {
    throw ConfigError("amp.scaler.hysteresis: expected >= 1, got " + std::to_string(hysteresis()));
  }
  if (min_scale() > max_scale()) {
    throw ConfigError("amp.scaler.min_scale: " + format_number(min_scale()) + " is above amp.scaler.max_scale " +
                      format_number(max_scale()));
  }
  if (init_scale() < min_scale() || init_scale() > max_scale()) {
    throw ConfigError("amp.scaler.init_scale: " + format_number(init_scale()) + " is outside [min_scale, max_scale] = [" +
                      format_number(min_scale()) + ", " + format_number(max_scale()) + "]");
  }
  if (max_consecutive_skips() < 0) {
    throw ConfigError("amp.scaler.max_consecutive_skips: expected >= 0 (0 = no limit), got " +
                      std::to_string(max_consecutive_skips()));
  }
}

void GradScalerOptions::declare(config::Fields<GradScalerOptions>& f) {
  using O = GradScalerOptions;
  f.add<double>("init_scale", [](O& o) -> double& { return o.init_scale(); }, "initial loss scale").greater_than(0);
  f.add<double>("growth_factor", [](O& o) -> double& { return o.growth_factor(); },
                "scale multiplier after growth_interval clean steps")
      .greater_than(1);
  f.add<double>("backoff_factor", [](O& o) -> double& { return o.backoff_factor(); }, "scale multiplier on inf/NaN")
      .greater_than(0)
      .less_than(1);
  f.add<int64_t>("growth_interval", [](O& o) -> int64_t& { return o.growth_interval(); },
                 "clean steps before the scale grows")
      .min(1);
  f.add<int64_t>("hysteresis", [](O& o) -> int64_t& { return o.hysteresis(); }, "overflows tolerated before backing off")
      .min(1);
  f.add<double>("min_scale", [](O& o) -> double& { return o.min_scale(); }, "lower bound of the scale").greater_than(0);
  f.add<double>("max_scale", [](O& o) -> double& { return o.max_scale(); }, "upper bound of the scale").greater_than(0);
  f.add<int64_t>("max_consecutive_skips", [](O& o) -> int64_t& { return o.max_consecutive_skips(); },
                 "stop with an error after this many skipped steps in a row (0: never)")
      .min(0);
}

GradScaler::GradScaler(GradScalerOptions options, std::shared_ptr<launch::Communicator> comm)
    : options_(std::move(options)), comm_(std::move(comm)) {
  if (options_.enabled()) options_.validate();
  if (!comm_) comm_ = std::make_shared<launch::LocalCommunicator>();
  scale_ = options_.init_scale();
  hysteresis_tracker_ = options_.hysteresis();
}

void GradScaler::set_named_parameters(const NamedTensors& params) {
  names_.clear();
  for (const auto& [name, p] : params) {
    if (p.defined()) names_[p.unsafeGetTensorImpl()] = name;
  }
}

void GradScaler::record_terms(const NamedTensors& terms) {
  if (!enabled()) return;
  for (const auto& [name, t] : terms) terms_.emplace_back(name, t.defined() ? t.detach() : t);
}

torch::Tensor GradScaler::scale(const torch::Tensor& loss) const {
  if (!enabled()) return loss;
  return loss * scale_;
}

double GradScaler::scale() const { return enabled() ? scale_ : 1.0; }

void GradScaler::unscale(torch::optim::Optimizer& optimizer) {
  if (!enabled()) return;
  std::vector<torch::Tensor> params;
  for (const auto& group : optimizer.param_groups()) {
    for (const auto& p : group.params()) params.push_back(p);
  }
  unscale_grads(params);
}

void GradScaler::unscale(const std::vector<torch::Tensor>& params) {
  if (!enabled()) return;
  unscale_grads(params);
}

void GradScaler::unscale_grads(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> fresh;  // parameters not yet unscaled in this step
  std::vector<torch::Tensor> grads;
  for (const auto& p : params) {
    if (!p.defined() || !unscaled_.insert(p.unsafeGetTensorImpl()).second) continue;
    fresh.push_back(p);
    const auto& g = p.grad();
    if (!g.defined()) continue;
    if (g.is_sparse()) throw Error("amp::GradScaler: sparse gradient of '" + param_name(p) + "' is not supported");
    grads.push_back(g);
  }
  // Every rank holds the same parameters, so every rank takes this early return alike and
  // the collectives below stay matched.
  if (fresh.empty()) return;
  checked_ = true;

  // Group by device and dtype: the fused CUDA kernel wants one of each per call.
  std::map<std::tuple<int, int, int>, std::vector<torch::Tensor>> groups;
  for (const auto& g : grads) {
    groups[{static_cast<int>(g.device().type()), g.device().index(), static_cast<int>(g.scalar_type())}].push_back(g);
  }
  const double inv_scale = 1.0 / scale_;
  // [1] float flags, > 0 where inf/NaN was found; kept per side so that CUDA flags cross
  // to the host (a sync) at most once.
  torch::Tensor cuda_found;
  torch::Tensor cpu_found;
  auto merge = [](torch::Tensor& acc, const torch::Tensor& f) {
    acc = acc.defined() ? torch::maximum(acc, f.to(acc.device())) : f;
  };
  for (auto& [key, group] : groups) {
    const torch::Device device = group.front().device();
    if (device.is_cuda()) {
      // One fused pass: multiplies by inv_scale and sets found to 1 on any inf/NaN.
      auto found = torch::zeros({1}, torch::TensorOptions().dtype(torch::kFloat).device(device));
      auto inv = torch::full({1}, inv_scale, torch::TensorOptions().dtype(torch::kFloat).device(device));
      at::_amp_foreach_non_finite_check_and_unscale_(group, found, inv);
      merge(cuda_found, found);
    } else {
      // The fused kernel is CUDA-only in LibTorch 1.13: one foreach multiply, then one
      // reduction. inv_scale is a power of two for the default factors, so this is exact.
      if (inv_scale != 1.0) at::_foreach_mul_(group, inv_scale);
      merge(cpu_found, cpu_non_finite(group));
    }
  }

  // One float through the communicator so that every rank skips the same steps, on the
  // device the backend reduces on (CUDA for NCCL, CPU otherwise).
  const torch::Device comm_device = comm_->device();
  auto found = torch::zeros({1}, torch::TensorOptions().dtype(torch::kFloat).device(comm_device));
  if (cuda_found.defined()) found = torch::maximum(found, cuda_found.to(comm_device));
  if (cpu_found.defined()) found = torch::maximum(found, cpu_found.to(comm_device));
  comm_->all_reduce(found, launch::ReduceOp::kMax);
  // The one host sync of the step: whether to step has to be known on the host.
  const bool inf = found.item<float>() > 0.0f;
  if (!inf) return;
  found_inf_ = true;
  // Only the first skip of a run of skips is diagnosed (that is what the error reports),
  // so clean training never pays for it.
  if (consecutive_skips_ == 0) diagnose(fresh, grads);
}

void GradScaler::diagnose(const std::vector<torch::Tensor>& params, const std::vector<torch::Tensor>& grads) {
  const auto bad = non_finite_flags(grads);
  std::vector<std::string> names;
  std::size_t gi = 0;
  for (const auto& p : params) {
    if (!p.grad().defined()) continue;
    if (gi < bad.size() && bad[gi]) names.push_back(param_name(p));
    ++gi;
  }
  if (!first_skip_report_.empty()) first_skip_report_ += "; ";
  if (names.empty()) {
    first_skip_report_ += "all " + std::to_string(grads.size()) + " gradients finite on rank " +
                          std::to_string(comm_->rank()) + " (another rank overflowed)";
    return;
  }
  const std::size_t shown = std::min<std::size_t>(names.size(), 5);
  std::string list = join(std::vector<std::string>(names.begin(), names.begin() + static_cast<std::ptrdiff_t>(shown)));
  if (names.size() > shown) list += ", ...";
  first_skip_report_ += "first non-finite gradients: " + list + " (" + std::to_string(names.size()) + " of " +
                        std::to_string(grads.size()) + " on rank " + std::to_string(comm_->rank()) + ")";
}

std::string GradScaler::param_name(const torch::Tensor& p) const {
  auto it = names_.find(p.unsafeGetTensorImpl());
  if (it != names_.end()) return it->second;
  std::ostringstream os;
  os << "<unnamed parameter " << p.sizes() << ">";
  return os.str();
}

bool GradScaler::step(torch::optim::Optimizer& optimizer) {
  if (!enabled()) {
    optimizer.step();
    return true;
  }
  unscale(optimizer);
  if (found_inf_) return false;
  optimizer.step();
  return true;
}

void GradScaler::update() {
  if (!enabled()) return;
  if (!checked_) {
    throw Error("amp::GradScaler::update(): no unscale() or step() ran in this step; call scaler.step(optimizer) "
                "before scaler.update()");
  }
  ++updates_;
  if (found_inf_) {
    ++skipped_total_;
    if (consecutive_skips_ == 0) {
      // Terms are judged here rather than at unscale, so record_terms may come at any
      // point of the step.
      std::string terms;
      std::vector<std::string> finite;
      for (const auto& [name, t] : terms_) {
        const bool ok = !t.defined() || torch::isfinite(t).all().item<bool>();
        if (ok) {
          finite.push_back(name);
        } else {
          terms += (terms.empty() ? "" : ", ") + name;
        }
      }
      std::string report;
      if (terms_.empty()) {
        report = "no loss terms recorded (GradScaler::record_terms)";
      } else if (terms.empty()) {
        report = "loss terms all finite (the overflow happened in backward)";
      } else {
        report = "non-finite loss terms: " + terms;
      }
      first_skip_report_ = report + (first_skip_report_.empty() ? "" : "; " + first_skip_report_);
      first_skip_update_ = updates_;
    }
    ++consecutive_skips_;
    growth_tracker_ = 0;
    hysteresis_tracker_ = std::max<int64_t>(hysteresis_tracker_ - 1, 0);
    if (hysteresis_tracker_ == 0) scale_ = std::max(scale_ * options_.backoff_factor(), options_.min_scale());
  } else {
    consecutive_skips_ = 0;
    first_skip_report_.clear();
    first_skip_update_ = -1;
    if (++growth_tracker_ >= options_.growth_interval()) {
      scale_ = std::min(scale_ * options_.growth_factor(), options_.max_scale());
      growth_tracker_ = 0;
      hysteresis_tracker_ = options_.hysteresis();
    }
  }
  checked_ = false;
  found_inf_ = false;
  unscaled_.clear();
  terms_.clear();

  const int64_t limit = options_.max_consecutive_skips();
  if (limit > 0 && consecutive_skips_ >= limit) {
    throw Error("amp::GradScaler: " + std::to_string(consecutive_skips_) +
                " optimizer steps in a row skipped for inf/NaN gradients (amp.scaler.max_consecutive_skips=" +
                std::to_string(limit) + "); loss scale now " + format_number(scale_) + " (min_scale " +
                format_number(options_.min_scale()) + "), so training is diverging rather than overflowing. At the first "
                "skipped step (update " + std::to_string(first_skip_update_) + "): " + first_skip_report_);
  }
}

std::map<std::string, torch::Tensor> GradScaler::state_dict() const {
  if (!enabled()) return {};
  auto i64 = [](int64_t v) { return torch::tensor(v, torch::kLong); };
  return {
      {"scale", torch::tensor(scale_, torch::kDouble)},
      {"growth_tracker", i64(growth_tracker_)},
      {"hysteresis_tracker", i64(hysteresis_tracker_)},
      {"skipped_steps", i64(skipped_total_)},
      {"consecutive_skips", i64(consecutive_skips_)},
      {"steps", i64(updates_)},
  };
}

void GradScaler::load_state_dict(const std::map<std::string, torch::Tensor>& state) {
  if (!enabled()) return;
  auto get = [&](const std::string& key, torch::ScalarType dtype) -> torch::Tensor {
    auto it = state.find(key);
    if (it == state.end()) throw CheckpointError("GradScaler state: missing key '" + key + "'");
    const auto& t = it->second;
    if (!t.defined() || t.numel() != 1 || t.scalar_type() != dtype) {
      std::ostringstream os;
      os << "GradScaler state: key '" << key << "' must be one " << c10::toString(dtype) << " value, got ";
      if (t.defined()) {
        os << c10::toString(t.scalar_type()) << " " << t.sizes();
      } else {
        os << "an undefined tensor";
      }
      throw CheckpointError(os.str());
    }
    return t.cpu();
  };
  const double scale = get("scale", torch::kDouble).item<double>();
  if (!(scale > 0.0) || !std::isfinite(scale)) {
    throw CheckpointError("GradScaler state: key 'scale' must be positive and finite, got " + format_number(scale));
  }
  auto count = [&](const std::string& key) {
    const int64_t v = get(key, torch::kLong).item<int64_t>();
    if (v < 0) throw CheckpointError("GradScaler state: key '" + key + "' must be >= 0, got " + std::to_string(v));
    return v;
  };
  const int64_t growth = count("growth_tracker");
  const int64_t hysteresis = count("hysteresis_tracker");
  const int64_t skipped = count("skipped_steps");
  const int64_t consecutive = count("consecutive_skips");
  const int64_t steps = count("steps");
  scale_ = scale;
  growth_tracker_ = growth;
  hysteresis_tracker_ = hysteresis;
  skipped_total_ = skipped;
  consecutive_skips_ = consecutive;
  updates_ = steps;
  checked_ = false;
  found_inf_ = false;
  unscaled_.clear();
  terms_.clear();
  first_skip_report_ = consecutive > 0 ? "not known (restored from a checkpoint mid-run of skips)" : "";
  first_skip_update_ = -1;
}

}  // namespace retort::amp
