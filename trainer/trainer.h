#pragma once
/// The training loop: data -> autocast forward -> scaled backward with bucketed gradient
/// all-reduce -> unscale / clip / step-or-skip -> schedule, metrics, checkpoints.
///   Trainer trainer(std::move(setup));
///   TrainResult r = trainer.fit();     // runs to trainer.max_epochs / trainer.max_steps
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <filesystem>
#include <memory>
#include <string>

#include "amp/options.h"
#include "data/data.h"
#include "launch/communicator.h"
#include "launch/world.h"
#include "trainer/grad_reducer.h"
#include "trainer/options.h"
#include "trainer/task.h"

namespace retort::trainer {

/// The `ddp:` section: the communicator's options and the gradient reducer's, as those
/// parts take them, and batch norm across ranks.
struct DdpOptions {
  launch::CommOptions comm;    ///< ddp.backend, ddp.timeout_s
  GradReducerOptions reducer;  ///< ddp.bucket_mb, ddp.find_unused
  /// Batch norm statistics over every rank's samples, so N ranks train the model one
  /// process trains; false: each rank's own (rank 0's running statistics broadcast before
  /// every forward and evaluation, as DDP's broadcast_buffers).
  bool sync_batchnorm = true;
  static void declare(config::Fields<DdpOptions>& f);
};

struct TrainerSetup {
  TrainerOptions trainer;
  OptimOptions optim;
  data::DataOptions data;
  amp::AmpOptions amp;
  DdpOptions ddp;
  std::filesystem::path run_dir;   ///< rank 0 writes here
  std::string config_yaml;         ///< resolved config, stored in every checkpoint
  std::shared_ptr<launch::Communicator> comm;
  torch::Device device = torch::kCPU;
  std::shared_ptr<Task> task;
  std::shared_ptr<const data::Dataset> train_set;
  std::shared_ptr<const data::Dataset> test_set;  ///< may be null: no evaluation
};

struct EvalResult {
  double loss = 0;      ///< mean cross-entropy per prediction (nats)
  double accuracy = 0;  ///< in [0, 1]; a language model's: of its next-token guesses
  int64_t samples = 0;  ///< predictions: images, or a language model's tokens
};

/// The eval record of metrics.jsonl: loss and accuracy; for token windows also perplexity
/// (exp loss) and bits per byte (loss / ln 2 over the text bytes per token of the split's
/// file, exact for the bytes tokenizer).
nlohmann::json eval_record(const EvalResult& result, const data::Dataset& dataset);

struct TrainResult {
  int64_t steps = 0;
  int64_t epochs = 0;
  EvalResult last_eval;
  double train_seconds = 0;
  double samples_per_s = 0;
  bool stopped_early = false;  ///< stop requested (SIGTERM): checkpoint written, resumable
};

class Trainer {
 public:
  explicit Trainer(TrainerSetup setup);
  ~Trainer();
  TrainResult fit();

 private:
  struct State;
  bool train_epoch(int64_t epoch, TrainResult& result);  // true: training is over
  void train_micro_batch(const data::Batch& batch, int64_t step_samples, bool sync);
  Losses empty_shard_loss(const torch::Tensor& x);
  void optimizer_step();
  bool after_step(int64_t epoch, TrainResult& result);   // true: training is over
  void log_metrics(int64_t epoch);
  void profile_at_step_end(bool finished);  // starts or ends trainer.profile's span
  void write_profile();
  void end_epoch(int64_t epoch, bool done, TrainResult& result);
  void save_checkpoint();
  bool restore(const std::string& resume);
  EvalResult run_eval();
  std::unique_ptr<State> s_;
};

/// Loss and accuracy of `model` on `dataset` (sharded over the communicator's ranks and
/// summed), in eval mode, without gradients, under the given amp options: batches of
/// data.eval_batch_size, normalized with data.name's pixel statistics.
EvalResult evaluate(models::Model& model, const data::Dataset& dataset, const data::DataOptions& data,
                    const torch::Device& device, launch::Communicator& comm, const amp::AmpOptions& amp = {});

/// Sets intra-op threads for LibTorch (OpenMP) and OpenBLAS to the same count, so they do
/// not oversubscribe the cores; 0 means the cores available to this process.
int set_threads(int64_t threads);

}  // namespace retort::trainer
