#include "trainer/trainer.h"

#include <dlfcn.h>
#include <sched.h>

#include <chrono>
#include <cmath>

#include "amp/amp.h"
#include "core/error.h"
#include "core/fs.h"
#include "launch/world.h"
#include "models/weights.h"
#include "trainer/checkpoint.h"
#include "trainer/grad_reducer.h"
#include "trainer/metrics.h"
#include "trainer/optim.h"
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
  f.add("backend", &DdpOptions::backend,
        "collectives: auto (local for one process, nccl on GPUs, mpi on CPUs), local, mpi or nccl")
      .one_of({"auto", "local", "mpi", "nccl"});
  f.add("bucket_mb", &DdpOptions::bucket_mb, "gradient bucket size in MB (the first bucket is smaller)").greater_than(0);
  f.add("find_unused", &DdpOptions::find_unused, "tolerate parameters that get no gradient (zeros are reduced)");
  f.add("timeout_s", &DdpOptions::timeout_s, "seconds a collective may take before the job is ended").greater_than(0);
}

int set_threads(int64_t threads) {
  int n = static_cast<int>(threads);
  if (n <= 0) {
    cpu_set_t set;
    n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
  }
  at::set_num_threads(n);
  // OpenBLAS keeps its own pool; left at its default it runs one thread per core next to
  // OpenMP's and the two fight (measured: a step 3x slower). Same count for both.
  using SetFn = void (*)(int);
  if (auto fn = reinterpret_cast<SetFn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) fn(n);
  return n;
}

// ------------------------------------------------------------------------------------
// Evaluation
// ------------------------------------------------------------------------------------

EvalResult evaluate(models::Model& model, const data::Dataset& dataset, int64_t batch_size,
                    const torch::Device& device, launch::Communicator& comm, const amp::AmpOptions& amp_options) {
  const bool was_training = model.is_training();
  model.eval();
  torch::NoGradGuard no_grad;
  data::DistributedSampler sampler(dataset.size(), batch_size, comm.rank(), comm.size(), 0, /*shuffle=*/false);
  data::LoaderOptions lopts;
  lopts.device = device;
  data::Loader loader(dataset, sampler, lopts);
  // Sums stay on the device (loss sum, correct, samples): one host sync at the end.
  auto sums = torch::zeros({3}, torch::TensorOptions().dtype(torch::kFloat64).device(device));
  amp::Autocast autocast(amp_options, device.type());
  while (auto batch = loader.next()) {
    if (batch->y.numel() == 0) continue;
    auto logits = model.forward(batch->x).logits;
    sums[0] += torch::nn::functional::cross_entropy(logits.to(torch::kFloat32), batch->y,
                                                    torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
    sums[1] += logits.argmax(1).eq(batch->y).sum();
    sums[2] += batch->y.size(0);
  }
  comm.all_reduce_staged(sums, launch::ReduceOp::kSum);
  sums = sums.cpu();
  model.train(was_training);
  EvalResult r;
  r.samples = static_cast<int64_t>(sums[2].item<double>());
  r.loss = sums[0].item<double>() / std::max(1.0, sums[2].item<double>());
  r.accuracy = sums[1].item<double>() / std::max(1.0, sums[2].item<double>());
  return r;
}

// ------------------------------------------------------------------------------------
// Trainer state and setup
// ------------------------------------------------------------------------------------

struct Trainer::State {
  TrainerSetup setup;
  bool rank0 = true;
  NamedParams params;
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  std::unique_ptr<LrSchedule> schedule;
  std::unique_ptr<data::DistributedSampler> sampler;
  std::unique_ptr<amp::GradScaler> scaler;
  std::unique_ptr<amp::MasterWeights> master;
  std::unique_ptr<GradReducer> reducer;
  std::unique_ptr<Checkpointer> checkpointer;
  std::unique_ptr<Metrics> metrics;
  int64_t step = 0;            // optimizer steps done
  int64_t consumed = 0;        // global batches of the current epoch already trained on
  int64_t total_steps = 0;
  int64_t skipped = 0;
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
  const auto amp_mode = amp::parse_mode(su.amp.mode);
  if (amp_mode == amp::AmpMode::kMaster)
    s.master = std::make_unique<amp::MasterWeights>(su.task->model(), amp::parse_dtype(su.amp.dtype), su.amp.keep_norm_fp32);

  s.params = su.task->trainable();
  NamedParams stepped = s.master ? s.master->master_params(s.params) : s.params;
  s.optimizer = make_optimizer(su.optim, stepped);

  s.sampler = std::make_unique<data::DistributedSampler>(su.train_set->size(), su.data.batch_size, su.comm->rank(),
                                                         su.comm->size(), static_cast<uint64_t>(su.trainer.seed));
  const int64_t per_epoch = (s.sampler->batches_per_epoch() + su.trainer.grad_accum - 1) / su.trainer.grad_accum;
  s.total_steps = per_epoch * su.trainer.max_epochs;
  if (su.trainer.max_steps > 0) s.total_steps = std::min(s.total_steps, su.trainer.max_steps);
  s.schedule = std::make_unique<LrSchedule>(su.optim, s.total_steps);

  s.scaler = std::make_unique<amp::GradScaler>(amp::scaler_options(su.amp), su.comm);
  s.scaler->set_named_parameters(stepped);

  GradReducerOptions ropts;
  ropts.bucket_mb = su.ddp.bucket_mb;
  ropts.find_unused = su.ddp.find_unused;
  s.reducer = std::make_unique<GradReducer>(s.params, su.comm, ropts);
  broadcast_parameters_and_buffers(su.task->model(), *su.comm);
  for (auto& [prefix, module] : su.task->extra_modules()) broadcast_parameters_and_buffers(*module, *su.comm);

  if (s.rank0) {
    s.checkpointer = std::make_unique<Checkpointer>(su.run_dir / "checkpoints", su.trainer.keep_last);
    s.metrics = std::make_unique<Metrics>(su.run_dir, su.trainer.progress);
  } else {
    s.metrics = std::make_unique<Metrics>(std::filesystem::path(), "off");
  }
}

Trainer::~Trainer() = default;

// ------------------------------------------------------------------------------------
// Checkpoints: model weights in model.safetensors; everything else that resume needs in
// state.safetensors under a prefix per component.
// ------------------------------------------------------------------------------------

void Trainer::save_checkpoint() {
  auto& s = *s_;
  if (!s.rank0) return;
  Checkpoint ckpt;
  ckpt.step = s.step;
  ckpt.config_yaml = s.setup.config_yaml;
  ckpt.model = models::weights_of(s.setup.task->model());
  auto& st = ckpt.state;
  for (auto& [prefix, module] : s.setup.task->extra_modules())
    for (auto& kv : models::weights_of(*module)) st["extra." + prefix + "." + kv.first] = kv.second;
  NamedParams stepped = s.master ? s.master->master_params(s.params) : s.params;
  for (auto& kv : optimizer_state(*s.optimizer, stepped)) st["optim." + kv.first] = kv.second;
  if (s.master)
    for (auto& kv : s.master->state_dict()) st["master." + kv.first] = kv.second;
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
      logger()->info("trainer.resume=auto: no checkpoint in {}, starting fresh", (s.setup.run_dir / "checkpoints").string());
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
  if (s.master) s.master->load_state_dict(strip_prefix("master.", ckpt.state));
  NamedParams stepped = s.master ? s.master->master_params(s.params) : s.params;
  load_optimizer_state(*s.optimizer, stepped, strip_prefix("optim.", ckpt.state));
  auto sampler = strip_prefix("sampler.", ckpt.state);
  s.sampler->load_state_dict(sampler);
  s.consumed = s.sampler->cursor();
  s.scaler->load_state_dict(strip_prefix("scaler.", ckpt.state));
  {
    at::Generator gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(get("rng.cpu"));
  }
  s.step = get("trainer.step").item<int64_t>();
  s.skipped = get("trainer.skipped").item<int64_t>();
  logger()->info("resumed from {} (step {}, epoch {}, batch {})", dir.string(), s.step, s.sampler->epoch() + 1, s.consumed);
  return true;
}

EvalResult Trainer::run_eval() {
  auto& s = *s_;
  return evaluate(s.setup.task->model(), *s.setup.test_set, s.setup.data.eval_batch_size, s.setup.device,
                  *s.setup.comm, s.setup.amp);
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

  data::LoaderOptions lopts;
  lopts.augment = su.data.augment;
  lopts.mixup = su.data.mixup;
  lopts.prefetch = su.data.prefetch;
  lopts.device = su.device;
  lopts.seed = static_cast<uint64_t>(to.seed);

  TrainResult result;
  const auto t0 = Clock::now();
  auto last_log = t0;
  int64_t samples_since_log = 0, samples_total = 0;
  auto loss_acc = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat32).device(su.device));
  std::vector<std::pair<std::string, torch::Tensor>> term_acc;
  int64_t steps_since_log = 0;
  std::string overflow;  // the scaler's report of a step skipped since the last metrics line
  bool done = s.step >= s.total_steps;
  const int64_t batches = s.sampler->batches_per_epoch();
  const int64_t dataset = su.train_set->size();
  const int64_t B = su.data.batch_size;
  su.task->train(true);

  for (int64_t epoch = s.sampler->epoch(); epoch < to.max_epochs && !done; ++epoch) {
    if (!resumed_mid_epoch) {
      s.sampler->set_epoch(epoch);
      s.consumed = 0;
    }
    resumed_mid_epoch = false;
    data::Loader loader(*su.train_set, *s.sampler, lopts);
    int64_t micro = 0, step_batches = 0, step_samples = 0;
    while (!done) {
      // --- DATA -------------------------------------------------------------------------
      auto batch = loader.next();
      if (!batch) break;
      if (micro == 0) {
        // This optimizer step spans up to grad_accum global batches; the last step of an
        // epoch may have fewer, and the last batch may be short. Weighting each rank's
        // mean loss by (its samples / the step's samples) makes the SUM all-reduce the
        // mean over the step's samples, whatever the world size.
        step_batches = std::min<int64_t>(to.grad_accum, batches - s.consumed);
        const int64_t first = s.consumed * B;
        step_samples = std::min<int64_t>(dataset, first + step_batches * B) - first;
      }
      const int64_t local = batch->y.size(0);
      const bool last_micro = micro + 1 == step_batches;
      s.reducer->set_sync(last_micro);

      // --- FORWARD (autocast) ----------------------------------------------------------
      Losses losses;
      {
        amp::Autocast autocast(su.amp, su.device.type());
        if (local > 0) {
          losses = su.task->loss(batch->x, batch->labels().smoothed(to.label_smoothing));
        } else {  // an empty shard still takes part in every gradient all-reduce
          losses.total = torch::zeros({}, torch::TensorOptions().device(su.device));
          for (auto& kv : s.params) losses.total = losses.total + kv.second.sum() * 0;
        }
      }
      const double weight = static_cast<double>(local) / static_cast<double>(step_samples);

      // --- BACKWARD (scaled; the reducer's hooks all-reduce full buckets meanwhile) ------
      s.scaler->scale(losses.total * weight).backward();
      loss_acc += losses.total.detach().to(torch::kFloat32) * weight;
      for (size_t i = 0; i < losses.terms.size(); ++i) {
        if (term_acc.size() <= i) term_acc.emplace_back(losses.terms[i].first, torch::zeros_like(loss_acc));
        term_acc[i].second += losses.terms[i].second.detach().to(torch::kFloat32) * weight;
      }
      s.scaler->record_terms(losses.terms);
      ++s.consumed;
      ++micro;
      samples_since_log += local;
      if (!last_micro) continue;

      // --- REDUCE, UNSCALE, CLIP, STEP OR SKIP ------------------------------------------
      micro = 0;
      s.reducer->finish();
      if (s.master) s.master->copy_grads_to_master();
      s.scaler->unscale(*s.optimizer);
      su.task->before_step();
      if (to.grad_clip > 0) {
        std::vector<torch::Tensor> ps;
        for (auto& group : s.optimizer->param_groups())
          for (auto& p : group.params()) ps.push_back(p);
        torch::nn::utils::clip_grad_norm_(ps, to.grad_clip);
      }
      const double lr = s.schedule->lr(s.step);
      set_lr(*s.optimizer, lr);
      const bool stepped = s.scaler->step(*s.optimizer);
      s.scaler->update();
      if (!stepped) {
        ++s.skipped;
        overflow = s.scaler->skip_report();
      }
      if (s.master && stepped) s.master->copy_master_to_model();
      su.task->after_step();
      s.optimizer->zero_grad();
      if (s.master) s.master->zero_model_grads();
      ++s.step;
      ++steps_since_log;

      // --- METRICS, CHECKPOINTS, STOP ----------------------------------------------------
      const bool last = s.step >= s.total_steps;
      if (s.step % to.log_every == 0 || last || s.step == 1) {
        auto packed = torch::cat({loss_acc.reshape({1}), torch::ones({1}, loss_acc.options()) * static_cast<double>(samples_since_log)});
        for (auto& t : term_acc) packed = torch::cat({packed, t.second.reshape({1})});
        // Reduced where it lives (staged only if the communicator needs another device), then
        // one copy to the host for the log line.
        packed = packed.to(torch::kFloat64);
        su.comm->all_reduce_staged(packed, launch::ReduceOp::kSum);
        packed = packed.cpu();
        const double elapsed = seconds_since(last_log);
        const double global_samples = packed[1].item<double>();
        const double sps = global_samples / std::max(elapsed, 1e-9);
        const double loss = packed[0].item<double>() / static_cast<double>(steps_since_log);
        nlohmann::json row = {{"kind", "train"}, {"step", s.step}, {"epoch", epoch + 1},
                              {"loss", loss},    {"lr", lr},        {"samples_per_s", sps}};
        std::string extra;
        for (size_t i = 0; i < term_acc.size(); ++i) {
          const double v = packed[2 + static_cast<int64_t>(i)].item<double>() / static_cast<double>(steps_since_log);
          row["loss_" + term_acc[i].first] = v;
          if (term_acc.size() > 1) extra += term_acc[i].first + " " + c10::str(v).substr(0, 6) + "  ";
          term_acc[i].second.zero_();
        }
        if (s.scaler->enabled()) {
          row["scale"] = s.scaler->scale();
          extra += "scale " + std::to_string(static_cast<int64_t>(s.scaler->scale()));
        }
        row["skipped"] = s.skipped;
        if (!overflow.empty()) {  // a step since the last line was skipped: what overflowed
          row["overflow"] = overflow;
          extra += " skipped " + std::to_string(s.skipped);
          overflow.clear();
        }
        s.metrics->record(row);
        ProgressState ps{epoch + 1, to.max_epochs, s.step, s.total_steps, loss, sps, extra};
        s.metrics->progress(ps, true);
        loss_acc.zero_();
        samples_total += static_cast<int64_t>(global_samples);
        samples_since_log = 0;
        steps_since_log = 0;
        last_log = Clock::now();
      }
      if (to.checkpoint_every > 0 && s.step % to.checkpoint_every == 0) save_checkpoint();
      if (last) done = true;
      if (launch::any_rank_stopping(*su.comm)) {
        s.metrics->break_line();
        logger()->warn("stop requested: writing a checkpoint at step {}; resume with trainer.resume=auto", s.step);
        save_checkpoint();
        result.stopped_early = true;
        done = true;
      }
    }
    if (result.stopped_early) break;
    // --- END OF EPOCH: evaluate, checkpoint --------------------------------------------
    s.metrics->break_line();
    const bool epoch_complete = s.consumed >= batches;
    if (to.eval && su.test_set) {
      su.task->train(false);
      result.last_eval = run_eval();
      su.task->train(true);
      s.metrics->record({{"kind", "eval"},
                         {"step", s.step},
                         {"epoch", epoch + 1},
                         {"loss", result.last_eval.loss},
                         {"accuracy", result.last_eval.accuracy}});
      logger()->info("epoch {} step {}: test loss {:.4f}, accuracy {:.2f} %", epoch + 1, s.step, result.last_eval.loss,
                     100.0 * result.last_eval.accuracy);
    }
    if (to.checkpoint_every == 0 || (done && s.step % to.checkpoint_every != 0)) save_checkpoint();
    result.epochs = epoch_complete ? epoch + 1 : epoch;
  }
  result.steps = s.step;
  result.train_seconds = seconds_since(t0);
  result.samples_per_s = static_cast<double>(samples_total) / std::max(result.train_seconds, 1e-9);
  return result;
}

}  // namespace retort::trainer
