#include "trainer/trainer.h"

#include <dlfcn.h>
#include <sched.h>

#include <chrono>
#include <cmath>

#include "amp/amp.h"
#include "core/error.h"
#include "core/fs.h"
#include "launch/world.h"
#include "models/eval_scope.h"
#include "models/weights.h"
#include "trainer/checkpoint.h"
#include "trainer/grad_reducer.h"
#include "trainer/metrics.h"
#include "trainer/optim.h"
#include "trainer/profiler.h"
#include "trainer/schedule.h"

namespace retort::trainer {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::map<std::string, torch::Tensor> strip_prefix(const std::string& prefix, const std::map<std::string, torch::Tensor>& in) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& kv : in)
    if (kv.first.rfind(prefix, 0) == 0) out[kv.first.substr(prefix.size())] = kv.second;
  return out;
}

}  // namespace

void DdpOptions::declare(config::Fields<DdpOptions>& f) {
  // launch/ is on config/'s floor and declares no keys: its options are reached from here.
  f.add<std::string>("backend", [](DdpOptions& o) -> std::string& { return o.comm.backend; },
                     "collectives: auto (local for one process, nccl on GPUs, mpi on CPUs), local, mpi or nccl")
      .one_of({"auto", "local", "mpi", "nccl"});
  f.add_section("", &DdpOptions::reducer);
  f.add("sync_batchnorm", &DdpOptions::sync_batchnorm,
        "batch norm statistics over every rank's samples (N ranks train as 1 process); false: each rank's own, "
        "rank 0's running statistics broadcast before every forward");
  f.add<double>("timeout_s", [](DdpOptions& o) -> double& { return o.comm.timeout_s; },
                "seconds a collective may take before the job is ended")
      .greater_than(0);
}

int set_threads(int64_t threads) {
  int n = static_cast<int>(threads);
  if (n <= 0) {
    cpu_set_t set;
    n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
  }
  at::set_num_threads(n);
  // OpenBLAS keeps its own pool; left at its default it runs one thread per core next to
  // OpenMP's and the two fight for the cores. Same count for both.
  using SetFn = void (*)(int);
  if (auto fn = reinterpret_cast<SetFn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) fn(n);
  return n;
}

// ------------------------------------------------------------------------------------
// Evaluation
// ------------------------------------------------------------------------------------

EvalResult evaluate(models::Model& model, const data::Dataset& dataset, const data::DataOptions& data,
                    const torch::Device& device, launch::Communicator& comm, const amp::AmpOptions& amp_options) {
  models::EvalScope eval(model);
  torch::NoGradGuard no_grad;
  data::DistributedSampler sampler(dataset.size(), data.eval_batch_size, comm.rank(), comm.size(), 0, /*shuffle=*/false);
  data::LoaderOptions lopts = data::make_loader_options(data, device, 0);
  lopts.augment = false;
  lopts.mixup = 0;
  data::Loader loader(dataset, sampler, lopts);
  // Sums stay on the device (loss sum, correct, samples): one host sync at the end.
  auto sums = torch::zeros({3}, torch::TensorOptions().dtype(torch::kFloat64).device(device));
  amp::Autocast autocast(amp_options, device.type());
  while (auto batch = loader.next()) {
    if (batch->y.numel() == 0) continue;
    auto logits = model.forward(batch->x).logits;
    if (logits.dim() == 3) logits = logits.flatten(0, 1);  // a language model: every position predicts
    const auto y = batch->y.flatten();
    sums[0] += torch::nn::functional::cross_entropy(logits.to(torch::kFloat32), y,
                                                    torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
    sums[1] += logits.argmax(1).eq(y).sum();
    sums[2] += y.size(0);
  }
  comm.all_reduce_staged(sums, launch::ReduceOp::kSum);
  sums = sums.cpu();
  EvalResult r;
  r.samples = static_cast<int64_t>(sums[2].item<double>());
  r.loss = sums[0].item<double>() / std::max(1.0, sums[2].item<double>());
  r.accuracy = sums[1].item<double>() / std::max(1.0, sums[2].item<double>());
  return r;
}

nlohmann::json eval_record(const EvalResult& result, const data::Dataset& dataset) {
  nlohmann::json row = {{"loss", result.loss}, {"accuracy", result.accuracy}};
  if (!dataset.text) return row;
  row["ppl"] = std::exp(result.loss);
  const auto& file = dataset.text->tokens();
  if (file.text_bytes() > 0)
    row["bpb"] = result.loss / std::log(2.0) * static_cast<double>(file.size()) / static_cast<double>(file.text_bytes());
  return row;
}

// ------------------------------------------------------------------------------------
// Trainer state and setup
// ------------------------------------------------------------------------------------

/// What the trainer has seen since the last metrics line, on this rank.
struct LogWindow {
  torch::Tensor loss;                // weighted sum of the steps' losses
  std::vector<torch::Tensor> terms;  // one per Task::loss_terms(), the same on every rank
  int64_t samples = 0;
  int64_t steps = 0;
  Clock::time_point start = Clock::now();
  std::string overflow;              // the scaler's report of a step skipped in this window
};

struct Trainer::State {
  TrainerSetup setup;
  bool rank0 = true;
  NamedParams params;
  NamedParams stepped;  // what the optimizer steps: params, or their fp32 masters
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  std::unique_ptr<LrSchedule> schedule;
  std::unique_ptr<data::DistributedSampler> sampler;
  data::LoaderOptions loader;
  std::unique_ptr<amp::GradScaler> scaler;
  std::unique_ptr<amp::MasterWeights> master;
  std::unique_ptr<GradReducer> reducer;
  std::unique_ptr<Checkpointer> checkpointer;
  std::unique_ptr<Metrics> metrics;
  bool broadcast_buffers = false;  // batch norm per rank: rank 0's running statistics before every forward
  std::vector<std::string> terms;  // the task's loss terms
  LogWindow window;
  int64_t step = 0;            // optimizer steps done
  int64_t consumed = 0;        // global batches of the current epoch already trained on
  int64_t total_steps = 0;
  int64_t skipped = 0;
  int64_t samples_total = 0;   // samples trained on, over all ranks, by this fit()
  double lr = 0;
  std::unique_ptr<Profiler> profiler;  // while trainer.profile's steps run
  int64_t profile_from = -1;           // the step after which profiling starts
};

Trainer::Trainer(TrainerSetup setup) : s_(std::make_unique<State>()) {
  auto& s = *s_;
  s.setup = std::move(setup);
  auto& su = s.setup;
  if (!su.comm) su.comm = std::make_shared<launch::LocalCommunicator>();
  if (!su.task) throw Error("Trainer: no task");
  if (!su.train_set) throw Error("Trainer: no training data");
  s.rank0 = su.comm->rank() == 0;

  torch::manual_seed(static_cast<uint64_t>(su.trainer.seed));
  su.task->to(su.device);
  amp::validate(su.amp, su.device.type());
  // Every rank starts from rank 0's weights, and the fp32 masters are made from those.
  broadcast_parameters_and_buffers(su.task->model(), *su.comm);
  for (auto& [prefix, module] : su.task->extra_modules()) broadcast_parameters_and_buffers(*module, *su.comm);
  if (su.amp.mode == amp::AmpMode::kMaster)
    s.master = std::make_unique<amp::MasterWeights>(su.task->model(), su.amp.dtype, su.amp.keep_norm_fp32);

  s.params = su.task->trainable();
  s.stepped = s.master ? s.master->master_params(s.params) : s.params;
  s.optimizer = make_optimizer(su.optim, s.stepped);

  s.sampler = std::make_unique<data::DistributedSampler>(su.train_set->size(), su.data.batch_size, su.comm->rank(),
                                                         su.comm->size(), static_cast<uint64_t>(su.trainer.seed));
  s.loader = data::make_loader_options(su.data, su.device, static_cast<uint64_t>(su.trainer.seed));
  const int64_t per_epoch = (s.sampler->batches_per_epoch() + su.trainer.grad_accum - 1) / su.trainer.grad_accum;
  s.total_steps = per_epoch * su.trainer.max_epochs;
  if (su.trainer.max_steps > 0) s.total_steps = std::min(s.total_steps, su.trainer.max_steps);
  s.schedule = std::make_unique<LrSchedule>(su.optim, s.total_steps);

  s.scaler = std::make_unique<amp::GradScaler>(amp::scaler_options(su.amp), su.comm);
  s.scaler->set_named_parameters(s.stepped);

  // Master mode: gradients accumulate and are reduced in the fp32 masters' .grad.
  s.reducer = std::make_unique<GradReducer>(s.params, su.comm, su.ddp.reducer, s.stepped);
  if (su.comm->size() > 1) {
    if (su.ddp.sync_batchnorm)
      su.task->model().set_batch_norm_sync(su.comm);
    else
      s.broadcast_buffers = true;
  }

  s.terms = su.task->loss_terms();
  if (s.rank0) {
    s.checkpointer = std::make_unique<Checkpointer>(su.run_dir / "checkpoints", su.trainer.keep_last);
    s.metrics = std::make_unique<Metrics>(su.run_dir, su.trainer.progress);
  } else {
    s.metrics = std::make_unique<Metrics>(std::filesystem::path(), "off");
  }
}

Trainer::~Trainer() {
  // The model may outlive the trainer: its later forwards must not wait for other ranks.
  if (s_) s_->setup.task->model().set_batch_norm_sync(nullptr);
}

// ------------------------------------------------------------------------------------
// Checkpoints: model weights in model.safetensors (in master mode the fp32 masters, not
// their rounded copies); everything else that resume needs in state.safetensors under a
// prefix per component.
// ------------------------------------------------------------------------------------

void Trainer::save_checkpoint() {
  auto& s = *s_;
  if (!s.rank0) return;
  Checkpoint ckpt;
  ckpt.step = s.step;
  ckpt.config_yaml = s.setup.config_yaml;
  ckpt.model = models::weights_of(s.setup.task->model());
  if (s.master)
    for (auto& [name, master] : s.master->state_dict()) ckpt.model[name] = master;
  auto& st = ckpt.state;
  for (auto& [prefix, module] : s.setup.task->extra_modules())
    for (auto& kv : models::weights_of(*module)) st["extra." + prefix + "." + kv.first] = kv.second;
  for (auto& kv : optimizer_state(*s.optimizer, s.stepped)) st["optim." + kv.first] = kv.second;
  // The loader reads ahead: record the batches trained on, not those prefetched.
  auto sampler = s.sampler->state_dict();
  sampler["cursor"] = torch::tensor(s.consumed, torch::kInt64);
  sampler["epoch"] = torch::tensor(s.sampler->epoch(), torch::kInt64);
  for (auto& kv : sampler) st["sampler." + kv.first] = kv.second;
  for (auto& kv : s.scaler->state_dict()) st["scaler." + kv.first] = kv.second;
  for (auto& kv : s.setup.task->state_dict()) st["task." + kv.first] = kv.second;
  {
    at::Generator gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    st["rng.cpu"] = gen.get_state();
  }
  st["trainer.step"] = torch::tensor(s.step, torch::kInt64);
  st["trainer.skipped"] = torch::tensor(s.skipped, torch::kInt64);
  auto path = s.checkpointer->save(ckpt);
  s.metrics->break_line();
  logger()->info("checkpoint {}", path.string());
}

bool Trainer::restore(const std::string& resume) {
  auto& s = *s_;
  std::filesystem::path dir;
  if (resume == "auto") {
    auto latest = Checkpointer::latest(s.setup.run_dir / "checkpoints");
    if (!latest) {
      if (s.rank0)
        logger()->info("trainer.resume=auto: no checkpoint in {}, starting fresh",
                       (s.setup.run_dir / "checkpoints").string());
      return false;
    }
    dir = *latest;
  } else {
    dir = Checkpointer::resolve(resume);
  }
  Checkpoint ckpt = Checkpointer::load(dir);
  auto get = [&](const std::string& key) -> const torch::Tensor& {
    auto it = ckpt.state.find(key);
    if (it == ckpt.state.end()) throw CheckpointError("checkpoint '" + dir.string() + "' lacks '" + key + "'");
    return it->second;
  };
  models::load_weights(s.setup.task->model(), ckpt.model, (dir / "model.safetensors").string());
  for (auto& [prefix, module] : s.setup.task->extra_modules())
    models::load_weights(*module, strip_prefix("extra." + prefix + ".", ckpt.state), (dir / "state.safetensors").string());
  s.setup.task->load_state_dict(strip_prefix("task.", ckpt.state));
  if (s.master) {
    // The masters are model.safetensors' fp32 weights (older checkpoints: "master.*").
    auto masters = strip_prefix("master.", ckpt.state);
    if (masters.empty())
      for (const auto& entry : s.master->named_parameters()) masters[entry.first] = ckpt.model.at(entry.first);
    s.master->load_state_dict(masters);
  }
  load_optimizer_state(*s.optimizer, s.stepped, strip_prefix("optim.", ckpt.state));
  s.sampler->load_state_dict(strip_prefix("sampler.", ckpt.state));
  s.consumed = s.sampler->cursor();
  s.scaler->load_state_dict(strip_prefix("scaler.", ckpt.state));
  {
    at::Generator gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(get("rng.cpu"));
  }
  s.step = get("trainer.step").item<int64_t>();
  s.skipped = get("trainer.skipped").item<int64_t>();
  if (s.rank0)  // once, not once per rank
    logger()->info("resumed from {} (step {}, epoch {}, batch {})", dir.string(), s.step, s.sampler->epoch() + 1,
                   s.consumed);
  return true;
}

EvalResult Trainer::run_eval() {
  auto& s = *s_;
  auto& su = s.setup;
  // Per-rank batch norm: every rank evaluates with rank 0's statistics, those of the
  // checkpoint, so the figure is the saved model's.
  if (s.broadcast_buffers) broadcast_buffers(su.task->model(), *su.comm);
  su.task->train(false);
  auto r = evaluate(su.task->model(), *su.test_set, su.data, su.device, *su.comm, su.amp);
  su.task->train(true);
  return r;
}

// ------------------------------------------------------------------------------------
// The loop
// ------------------------------------------------------------------------------------

TrainResult Trainer::fit() {
  auto& s = *s_;
  auto& su = s.setup;
  const auto& to = su.trainer;
  bool resumed_mid_epoch = !to.resume.empty() && restore(to.resume);
  if (resumed_mid_epoch && s.sampler->exhausted()) {  // saved at an epoch's end: start the next
    s.sampler->set_epoch(s.sampler->epoch() + 1);
    s.consumed = 0;
  }
  TrainResult result;
  const auto t0 = Clock::now();
  s.window = LogWindow();
  s.window.loss = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat32).device(su.device));
  for (size_t i = 0; i < s.terms.size(); ++i) s.window.terms.push_back(torch::zeros_like(s.window.loss));
  s.samples_total = 0;
  su.task->train(true);
  if (to.profile > 0) s.profile_from = s.step + to.profile_warmup;
  bool done = s.step >= s.total_steps;
  profile_at_step_end(done);

  for (int64_t epoch = s.sampler->epoch(); epoch < to.max_epochs && !done; ++epoch) {
    if (!resumed_mid_epoch) {
      s.sampler->set_epoch(epoch);
      s.consumed = 0;
    }
    resumed_mid_epoch = false;
    done = train_epoch(epoch, result);
    if (result.stopped_early) break;
    end_epoch(epoch, done, result);
  }
  if (s.profiler) write_profile();  // training ended within the profiled steps
  result.steps = s.step;
  result.train_seconds = seconds_since(t0);
  result.samples_per_s = static_cast<double>(s.samples_total) / std::max(result.train_seconds, 1e-9);
  return result;
}

bool Trainer::train_epoch(int64_t epoch, TrainResult& result) {
  auto& s = *s_;
  auto& su = s.setup;
  const int64_t batches = s.sampler->batches_per_epoch();
  data::Loader loader(*su.train_set, *s.sampler, s.loader);
  int64_t micro = 0, step_batches = 0, step_samples = 0;
  for (;;) {
    auto batch = [&] {
      RETORT_PHASE("data");
      return loader.next();
    }();
    if (!batch) break;
    if (micro == 0) {
      // This optimizer step spans up to grad_accum global batches; the last step of an
      // epoch may have fewer, and the last batch may be short. Weighting each rank's mean
      // loss by (its samples / the step's samples) makes the SUM all-reduce the mean over
      // the step's samples, whatever the world size.
      step_batches = std::min<int64_t>(su.trainer.grad_accum, batches - s.consumed);
      const int64_t first = s.consumed * su.data.batch_size;
      step_samples = std::min<int64_t>(su.train_set->size(), first + step_batches * su.data.batch_size) - first;
    }
    const bool last_micro = ++micro == step_batches;
    train_micro_batch(*batch, step_samples, last_micro);
    if (!last_micro) continue;
    micro = 0;
    optimizer_step();
    if (after_step(epoch, result)) return true;
  }
  return false;
}

void Trainer::train_micro_batch(const data::Batch& batch, int64_t step_samples, bool sync) {
  auto& s = *s_;
  auto& su = s.setup;
  const int64_t local = batch.y.size(0);
  s.reducer->set_sync(sync);
  if (s.broadcast_buffers) broadcast_buffers(su.task->model(), *su.comm);

  // --- FORWARD (autocast) --------------------------------------------------------------
  Losses losses;
  {
    RETORT_PHASE("forward");
    amp::Autocast autocast(su.amp, su.device.type());
    losses = local > 0 ? su.task->loss(batch.x, batch.labels().smoothed(su.trainer.label_smoothing))
                       : empty_shard_loss(batch.x);
  }
  if (losses.terms.size() != s.terms.size())
    throw Error("Trainer: the task returned " + std::to_string(losses.terms.size()) + " loss terms, but its loss_terms() names " +
                std::to_string(s.terms.size()));
  for (size_t i = 0; i < s.terms.size(); ++i)
    if (losses.terms[i].first != s.terms[i])
      throw Error("Trainer: loss term " + std::to_string(i) + " is '" + losses.terms[i].first +
                  "', but the task's loss_terms() names '" + s.terms[i] + "' there");
  const double weight = static_cast<double>(local) / static_cast<double>(step_samples);

  // --- BACKWARD (scaled; the reducer's hooks all-reduce full buckets meanwhile) --------
  {
    RETORT_PHASE("backward");
    s.scaler->scale(losses.total * weight).backward();
  }
  s.window.loss += losses.total.detach().to(torch::kFloat32) * weight;
  for (size_t i = 0; i < s.terms.size(); ++i) s.window.terms[i] += losses.terms[i].second.detach().to(torch::kFloat32) * weight;
  s.scaler->record_terms(losses.terms);
  ++s.consumed;
  s.window.samples += local;
}

Losses Trainer::empty_shard_loss(const torch::Tensor& x) {
  // An empty shard still takes part in every collective: the model's forward (batch norm
  // statistics across ranks) and every gradient all-reduce, with zero gradients.
  auto& s = *s_;
  Losses l;
  l.total = s.setup.task->model().forward(x).logits.sum() * 0;
  for (auto& kv : s.params) l.total = l.total + kv.second.sum() * 0;
  for (const auto& name : s.terms) l.terms.emplace_back(name, torch::zeros_like(l.total));
  return l;
}

void Trainer::optimizer_step() {
  auto& s = *s_;
  auto& su = s.setup;
  // --- REDUCE, UNSCALE, CLIP, STEP OR SKIP -----------------------------------------------
  {
    RETORT_PHASE("reduce");
    s.reducer->finish();
  }
  {
    RETORT_PHASE("unscale");
    s.scaler->unscale(*s.optimizer);
    su.task->before_step();
    if (su.trainer.grad_clip > 0) clip_grad_norm(*s.optimizer, su.trainer.grad_clip);
  }
  RETORT_PHASE("step");
  s.lr = s.schedule->lr(s.step);
  set_lr(*s.optimizer, s.lr);
  const bool stepped = s.scaler->step(*s.optimizer);
  s.scaler->update();
  if (!stepped) {
    ++s.skipped;
    s.window.overflow = s.scaler->skip_report();
  }
  if (s.master && stepped) s.master->copy_master_to_model();
  su.task->after_step();
  s.reducer->zero_grad();
  ++s.step;
  ++s.window.steps;
}

bool Trainer::after_step(int64_t epoch, TrainResult& result) {
  auto& s = *s_;
  const auto& to = s.setup.trainer;
  // --- METRICS, CHECKPOINTS, STOP --------------------------------------------------------
  bool finished = s.step >= s.total_steps;
  {
    RETORT_PHASE("metrics");
    if (s.step % to.log_every == 0 || finished || s.step == 1) log_metrics(epoch);
  }
  if (to.checkpoint_every > 0 && s.step % to.checkpoint_every == 0) save_checkpoint();
  profile_at_step_end(finished);
  if (launch::any_rank_stopping(*s.setup.comm)) {
    s.metrics->break_line();
    if (s.rank0) logger()->warn("stop requested: writing a checkpoint at step {}; resume with trainer.resume=auto", s.step);
    save_checkpoint();
    result.stopped_early = true;
    finished = true;
  }
  return finished;
}

void Trainer::profile_at_step_end(bool finished) {
  auto& s = *s_;
  const auto& to = s.setup.trainer;
  if (!s.profiler && s.step == s.profile_from && !finished)
    s.profiler = std::make_unique<Profiler>(s.setup.device);
  else if (s.profiler && (s.step == s.profile_from + to.profile || finished))
    write_profile();
}

void Trainer::write_profile() {
  auto& s = *s_;
  auto profile = s.profiler->stop();
  s.profiler.reset();
  const double steps = static_cast<double>(std::max<int64_t>(s.step - s.profile_from, 1));  // a stop may come first
  const auto path = s.setup.run_dir / ("trace-rank" + std::to_string(s.setup.comm->rank()) + ".json");
  std::filesystem::create_directories(s.setup.run_dir);
  profile.write_chrome_trace(path.string());
  if (!s.rank0) return;
  std::string phases, ops;
  int shown = 0;
  for (const auto& op : profile.ops()) {
    if (op.phase)
      phases += fmt::format("  {} {:.2f}", op.phase_name(), op.total_ms / steps);
    else if (shown++ < 10)
      ops += fmt::format("\n  {:9.3f} ms  {:6.1f} calls  {}", op.self_ms / steps, op.calls / steps, op.name);
  }
  logger()->info("profile of steps {}-{}: {} ({} events)", s.profile_from + 1, s.step, path.string(), profile.event_count());
  logger()->info("profile: ms per step by phase:{}", phases);
  logger()->info("profile: the ops of most self time, per step (self ms, calls, op):{}", ops);
}

void Trainer::log_metrics(int64_t epoch) {
  auto& s = *s_;
  auto& w = s.window;
  // One all-reduce of the same layout on every rank: loss, samples, each term. Reduced
  // where it lives (staged only if the communicator needs another device), then one copy
  // to the host for the log line.
  std::vector<torch::Tensor> parts{w.loss, torch::full({}, static_cast<double>(w.samples), w.loss.options())};
  parts.insert(parts.end(), w.terms.begin(), w.terms.end());
  auto packed = torch::stack(parts).to(torch::kFloat64);
  s.setup.comm->all_reduce_staged(packed, launch::ReduceOp::kSum);
  packed = packed.cpu();
  const auto* v = packed.data_ptr<double>();
  const double steps = static_cast<double>(w.steps);
  const double sps = v[1] / std::max(seconds_since(w.start), 1e-9);
  const double loss = v[0] / steps;
  nlohmann::json row = {{"kind", "train"}, {"step", s.step}, {"epoch", epoch + 1},
                        {"loss", loss},    {"lr", s.lr},     {"samples_per_s", sps}};
  if (s.setup.train_set->text) row["tokens_per_s"] = sps * static_cast<double>(s.setup.train_set->text->context());
  std::string extra;
  for (size_t i = 0; i < s.terms.size(); ++i) {
    const double term = v[2 + i] / steps;
    row["loss_" + s.terms[i]] = term;
    if (s.terms.size() > 1) extra += s.terms[i] + " " + c10::str(term).substr(0, 6) + "  ";
  }
  if (s.scaler->enabled()) {
    row["scale"] = s.scaler->scale();
    extra += "scale " + std::to_string(static_cast<int64_t>(s.scaler->scale()));
  }
  row["skipped"] = s.skipped;
  if (!w.overflow.empty()) {  // a step in this window was skipped: what overflowed
    row["overflow"] = w.overflow;
    extra += " skipped " + std::to_string(s.skipped);
  }
  s.metrics->record(row);
  const auto& to = s.setup.trainer;
  s.metrics->progress({epoch + 1, to.max_epochs, s.step, s.total_steps, loss, sps, extra}, true);
  s.samples_total += static_cast<int64_t>(v[1]);
  w.loss.zero_();
  for (auto& t : w.terms) t.zero_();
  w.samples = 0;
  w.steps = 0;
  w.overflow.clear();
  w.start = Clock::now();
}

void Trainer::end_epoch(int64_t epoch, bool done, TrainResult& result) {
  auto& s = *s_;
  auto& su = s.setup;
  const auto& to = su.trainer;
  // --- END OF EPOCH: evaluate, checkpoint ------------------------------------------------
  s.metrics->break_line();
  if (to.eval && su.test_set) {
    result.last_eval = run_eval();
    auto row = eval_record(result.last_eval, *su.test_set);
    row.update({{"kind", "eval"}, {"step", s.step}, {"epoch", epoch + 1}});
    s.metrics->record(row);
    std::string more;
    if (row.contains("ppl")) more += fmt::format(", perplexity {:.3f}", row["ppl"].get<double>());
    if (row.contains("bpb")) more += fmt::format(", {:.4f} bits per byte", row["bpb"].get<double>());
    logger()->info("epoch {} step {}: test loss {:.4f}, accuracy {:.2f} %{}", epoch + 1, s.step, result.last_eval.loss,
                   100.0 * result.last_eval.accuracy, more);
  }
  if (to.checkpoint_every == 0 || (done && s.step % to.checkpoint_every != 0)) save_checkpoint();
  result.epochs = s.consumed >= s.sampler->batches_per_epoch() ? epoch + 1 : epoch;
}

}  // namespace retort::trainer
