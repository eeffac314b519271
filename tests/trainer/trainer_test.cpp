#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <nlohmann/json.hpp>

#include "tests/common/expect.h"
#include "tests/common/gpt.h"
#include "tests/common/temp_dir.h"
#include "tests/common/synthetic.h"
#include "tests/trainer/helpers.h"
#include "amp/ops.h"
#include "core/error.h"
#include "core/fs.h"
#include "data/text_windows.h"
#include "data/token_file.h"
#include "models/models.h"
#include "launch/world.h"
#include "trainer/checkpoint.h"
#include "trainer/checkpoint_model.h"
#include "trainer/optim.h"
#include "trainer/schedule.h"
#include "trainer/trainer.h"
#include "tests/trainer/setup.h"

using retort::test::TempDir;

namespace fs = std::filesystem;
using namespace retort;
using namespace retort::trainer;

namespace {

models::ModelOptions tiny_model() {
  auto o = test::tiny_cnn();
  o.dropout = 0.1;  // exercises the RNG state in checkpoints
  return o;
}

TrainerSetup make_setup(const fs::path& run_dir, std::shared_ptr<data::Dataset> train, int64_t max_steps,
                        const models::ModelOptions& model = tiny_model()) {
  torch::manual_seed(7);
  auto task = std::make_shared<SupervisedTask>(models::make_model(model));
  auto s = test::quiet_setup(run_dir, std::move(task), std::move(train), max_steps, 7);
  s.trainer.log_every = 5;
  s.optim.lr = 3e-3;
  s.optim.weight_decay = 0.01;
  s.optim.warmup_steps = 3;
  s.data.augment = !s.train_set->text;  // images only
  s.config_yaml = "test: true\n";
  return s;
}

// Supervised training that asks to stop (as SIGTERM would) after `stop_after` steps: the
// trainer then checkpoints and returns, like a preempted job.
class StoppingTask : public SupervisedTask {
 public:
  StoppingTask(std::shared_ptr<models::Model> m, int64_t stop_after) : SupervisedTask(std::move(m)), left_(stop_after) {}
  void after_step() override {
    if (--left_ == 0) launch::request_stop();
  }

 private:
  int64_t left_;
};

// Same run, preempted after n steps, then resumed with trainer.resume=auto.
std::shared_ptr<Task> run_preempted_then_resumed(const fs::path& dir, std::shared_ptr<data::Dataset> train,
                                                 int64_t n, int64_t total, amp::AmpMode amp = amp::AmpMode::kOff,
                                                 const models::ModelOptions& model = tiny_model()) {
  auto first = make_setup(dir, train, total, model);
  first.trainer.checkpoint_every = 1000;
  first.amp.mode = amp;
  torch::manual_seed(7);
  first.task = std::make_shared<StoppingTask>(models::make_model(model), n);
  auto r = Trainer(std::move(first)).fit();
  launch::clear_stop_request();
  EXPECT_TRUE(r.stopped_early);
  EXPECT_EQ(r.steps, n);
  auto second = make_setup(dir, train, total, model);
  second.trainer.resume = "auto";
  second.trainer.checkpoint_every = 1000;
  second.amp.mode = amp;
  auto task = second.task;
  auto r2 = Trainer(std::move(second)).fit();
  EXPECT_EQ(r2.steps, total);
  return task;
}

}  // namespace

TEST(Schedule, WarmupThenCosineToFloor) {
  OptimOptions o;
  o.lr = 1.0;
  o.warmup_steps = 4;
  o.min_lr = 0.1;
  LrSchedule s(o, 104);
  EXPECT_DOUBLE_EQ(s.lr(0), 0.25);
  EXPECT_DOUBLE_EQ(s.lr(3), 1.0);
  EXPECT_DOUBLE_EQ(s.lr(4), 1.0);
  EXPECT_NEAR(s.lr(54), 0.55, 1e-12);
  EXPECT_NEAR(s.lr(104), 0.1, 1e-12);
  EXPECT_NEAR(s.lr(500), 0.1, 1e-12);
}

TEST(Schedule, StepDecay) {
  OptimOptions o;
  o.lr = 1.0;
  o.schedule = "step";
  o.step_size = 10;
  o.gamma = 0.5;
  LrSchedule s(o, 100);
  EXPECT_DOUBLE_EQ(s.lr(9), 1.0);
  EXPECT_DOUBLE_EQ(s.lr(10), 0.5);
  EXPECT_DOUBLE_EQ(s.lr(25), 0.25);
}

TEST(Optim, StateRoundTripContinuesIdentically) {
  for (std::string name : {"adamw", "sgd"}) {
    torch::manual_seed(1);
    auto a = torch::nn::Linear(4, 3);
    auto b = torch::nn::Linear(4, 3);
    {
      torch::NoGradGuard g;
      for (size_t i = 0; i < a->parameters().size(); ++i) b->parameters()[i].copy_(a->parameters()[i]);
    }
    OptimOptions o;
    o.name = name;
    o.lr = 0.1;
    o.weight_decay = 0.01;
    NamedParams pa, pb;
    for (auto& kv : a->named_parameters()) pa.emplace_back(kv.key(), kv.value());
    for (auto& kv : b->named_parameters()) pb.emplace_back(kv.key(), kv.value());
    auto oa = make_optimizer(o, pa);
    auto ob = make_optimizer(o, pb);
    auto x = torch::randn({8, 4});
    auto run = [&](torch::nn::Linear& m, torch::optim::Optimizer& opt) {
      opt.zero_grad();
      m->forward(x).pow(2).sum().backward();
      opt.step();
    };
    for (int i = 0; i < 3; ++i) run(a, *oa);
    {  // b gets a's weights and optimizer state, then both continue
      torch::NoGradGuard g;
      for (size_t i = 0; i < a->parameters().size(); ++i) b->parameters()[i].copy_(a->parameters()[i]);
    }
    load_optimizer_state(*ob, pb, optimizer_state(*oa, pa));
    for (int i = 0; i < 3; ++i) {
      run(a, *oa);
      run(b, *ob);
    }
    for (size_t i = 0; i < a->parameters().size(); ++i)
      EXPECT_TRUE(torch::equal(a->parameters()[i], b->parameters()[i])) << name;
  }
}

TEST(Optim, MismatchedStateIsACheckpointError) {
  auto a = torch::nn::Linear(4, 3);
  NamedParams pa;
  for (auto& kv : a->named_parameters()) pa.emplace_back(kv.key(), kv.value());
  auto opt = make_optimizer(OptimOptions{}, pa);
  std::map<std::string, torch::Tensor> st = {{"step.weight", torch::tensor(1)},
                                             {"exp_avg.weight", torch::zeros({2, 2})},
                                             {"exp_avg_sq.weight", torch::zeros({3, 4})}};
  EXPECT_THROW(load_optimizer_state(*opt, pa, st), CheckpointError);
  st = {{"momentum_buffer.nothere", torch::zeros({1})}};
  try {
    load_optimizer_state(*opt, pa, st);
    FAIL();
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("momentum_buffer.nothere"), std::string::npos) << e.what();
  }
}

TEST(Checkpointer, SaveKeepsLastKAndLoadsBack) {
  const TempDir d("keep");
  Checkpointer c(d, 2);
  for (int64_t step : {10, 20, 30}) {
    Checkpoint k;
    k.step = step;
    k.model = {{"w", torch::full({3}, static_cast<double>(step))}};
    k.state = {{"trainer.step", torch::tensor(step)}};
    k.config_yaml = "a: 1\n";
    c.save(k);
  }
  EXPECT_FALSE(fs::exists(d / "step-00000010"));
  EXPECT_TRUE(fs::exists(d / "step-00000020"));
  ASSERT_TRUE(Checkpointer::latest(d).has_value());
  EXPECT_EQ(Checkpointer::latest(d)->filename(), "step-00000030");
  auto k = Checkpointer::load(*Checkpointer::latest(d));
  EXPECT_EQ(k.step, 30);
  EXPECT_TRUE(torch::equal(k.model.at("w"), torch::full({3}, 30.0)));
  EXPECT_EQ(k.config_yaml, "a: 1\n");
  // a crashed save's temporary directory never counts as a checkpoint
  fs::create_directories(d / ".tmp-step-00000040-1");
  EXPECT_EQ(Checkpointer::latest(d)->filename(), "step-00000030");
}

TEST(Checkpointer, TruncatedOrAlteredFilesAreRefusedByName) {
  const TempDir d("corrupt");
  Checkpointer c(d, 3);
  Checkpoint k;
  k.step = 5;
  k.model = {{"w", torch::randn({64})}};
  k.config_yaml = "x: 1\n";
  auto dir = c.save(k);
  auto model = dir / "model.safetensors";
  const std::string good = read_file(model);
  write_file_atomic(model, good.substr(0, good.size() - 10));
  try {
    Checkpointer::load(dir);
    FAIL();
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("model.safetensors"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
  }
  std::string altered = good;
  altered[altered.size() - 1] ^= 1;
  write_file_atomic(model, altered);
  try {
    Checkpointer::load(dir);
    FAIL();
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("xxhash64"), std::string::npos) << e.what();
  }
  write_file_atomic(dir / "manifest.json", "{ not json");
  EXPECT_THROW(Checkpointer::load(dir), CheckpointError);
  EXPECT_THROW(Checkpointer::resolve(d / "nope"), CheckpointError);
}

TEST(CheckpointModel, BuildsTheConfiguredModelWithItsWeightsAndNamesTheFileOtherwise) {
  const TempDir d("ckpt-model");
  auto model = models::make_model(tiny_model());
  auto save = [&](const std::string& run, const std::string& config_yaml, std::map<std::string, torch::Tensor> w) {
    Checkpoint k;
    k.step = 3;
    k.model = std::move(w);
    k.config_yaml = config_yaml;
    return Checkpointer(d / run / "checkpoints", 1).save(k);
  };
  const std::string model_yaml = "model: {channels: [4, 8], convs_per_stage: 1, hidden: [16], dropout: 0.1}\n";
  save("good", "run: {dir: x}\n" + model_yaml, models::weights_of(*model));
  auto loaded = load_checkpoint_model(d / "good");  // a run directory: its newest checkpoint
  EXPECT_EQ(loaded.checkpoint.step, 3);
  EXPECT_FALSE(loaded.model->is_training());
  EXPECT_EQ(loaded.model->options().hidden, (std::vector<int64_t>{16}));
  for (const auto& [name, w] : models::weights_of(*model))
    EXPECT_TRUE(torch::equal(w, models::weights_of(*loaded.model).at(name))) << name;

  const auto no_model = save("no-model", "run: {dir: x}\n", models::weights_of(*model));
  test::expect_error<CheckpointError>([&] { load_checkpoint_model(no_model); },
                                      {(no_model / "config.yaml").string(), "no `model:` section"});
  const auto typo = save("typo", "model: {chanels: [4, 8]}\n", models::weights_of(*model));
  test::expect_error<ConfigError>([&] { load_checkpoint_model(typo); },
                                  {(typo / "config.yaml").string(), "model.chanels"});
  const auto unknown = save("unknown", "model: {name: resnet}\n", models::weights_of(*model));
  test::expect_error<ConfigError>([&] { load_checkpoint_model(unknown); },
                                  {(unknown / "config.yaml").string(), "model.name", "resnet"});
  auto weights = models::weights_of(*model);
  weights.erase("head.bias");
  const auto missing = save("missing", model_yaml, weights);
  test::expect_error<CheckpointError>([&] { load_checkpoint_model(missing); },
                                      {(missing / "model.safetensors").string(), "head.bias"});
  test::expect_error<CheckpointError>([&] { load_checkpoint_model(d / "nothing"); }, {(d / "nothing").string()});
}

TEST(Trainer, LearnsTheSyntheticTask) {
  const TempDir d("learn");
  auto train = test::band_dataset(512, 3);
  auto setup = make_setup(d, train, 60);
  setup.test_set = test::band_dataset(256, 4);
  setup.trainer.eval = true;
  setup.data.augment = false;
  auto model = setup.task;
  Trainer t(std::move(setup));
  auto r = t.fit();
  EXPECT_EQ(r.steps, 60);
  EXPECT_GT(r.last_eval.accuracy, 0.8);
  // run directory contents
  EXPECT_TRUE(fs::exists(d / "metrics.jsonl"));
  EXPECT_TRUE(Checkpointer::latest(d / "checkpoints").has_value());
  std::ifstream in(d / "metrics.jsonl");
  std::string line, last;
  int lines = 0;
  while (std::getline(in, line)) {
    ++lines;
    last = line;
    auto j = nlohmann::json::parse(line);
    EXPECT_TRUE(j.contains("step"));
    EXPECT_TRUE(j.contains("loss"));
    EXPECT_TRUE(j.contains("epoch"));
  }
  EXPECT_GE(lines, 3);
  EXPECT_NE(last.find("accuracy"), std::string::npos);
}

TEST(Trainer, ResumeIsBitIdentical) {
  // 2N steps in one run == N steps, preempted (checkpoint), resume=auto, N more steps.
  // 500 samples / 32 = 16 batches per epoch: the cut is mid-epoch.
  auto train = test::band_dataset(500, 5);
  const int64_t n = 12;
  const TempDir a_dir("resume-a");
  const TempDir b_dir("resume-b");
  auto straight = make_setup(a_dir, train, 2 * n);
  straight.trainer.checkpoint_every = 1000;
  auto straight_task = straight.task;
  Trainer(std::move(straight)).fit();
  auto resumed_task = run_preempted_then_resumed(b_dir, train, n, 2 * n);
  auto wa = models::weights_of(straight_task->model());
  auto wb = models::weights_of(resumed_task->model());
  ASSERT_EQ(wa.size(), wb.size());
  for (auto& [name, t] : wa) EXPECT_TRUE(torch::equal(t, wb.at(name))) << name;
}

TEST(Trainer, ResumeAcrossAnEpochBoundaryIsBitIdentical) {
  auto train = test::band_dataset(256, 6);  // 8 batches per epoch: preempted at the end of epoch 1
  const TempDir a_dir("epoch-a");
  const TempDir b_dir("epoch-b");
  auto straight = make_setup(a_dir, train, 20);
  auto straight_task = straight.task;
  Trainer(std::move(straight)).fit();
  auto resumed_task = run_preempted_then_resumed(b_dir, train, 8, 20);
  auto wa = models::weights_of(straight_task->model());
  auto wb = models::weights_of(resumed_task->model());
  for (auto& [name, t] : wa) EXPECT_TRUE(torch::equal(t, wb.at(name))) << name;
}

// A gpt on token windows at random offsets, preempted mid-epoch: a window is a function of
// (seed, epoch, index) and the sampler's place, the RNG (dropout) and the optimizer are in
// the checkpoint, so the resumed run ends with the same weights.
TEST(Trainer, LanguageModelResumeMidEpochIsBitIdentical) {
  const TempDir dir("resume-text"), a_dir("resume-text-a"), b_dir("resume-text-b");
  std::vector<int32_t> ids(3000);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>((i * 7 + i / 13) % 61);
  data::TokenFileInfo info;
  info.vocab_size = 64;
  info.tokenizer = "test";
  data::write_token_file(dir / "train.tokens", ids, info);
  auto train = std::make_shared<data::Dataset>();
  train->text = std::make_shared<data::TextWindows>(std::make_shared<data::TokenFile>(dir / "train.tokens", 64),
                                                    /*context=*/16, data::WindowSampling::kRandom, /*seed=*/3);
  ASSERT_EQ(train->size(), 187);  // 6 batches of 32 an epoch: preempted in the second epoch
  auto gpt = test::gpt_options(64, 16, 16, 2, 2, 0);
  gpt.dropout = 0.1;
  auto straight = make_setup(a_dir, train, 14, gpt);
  straight.trainer.checkpoint_every = 1000;
  auto straight_task = straight.task;
  Trainer(std::move(straight)).fit();
  auto resumed_task = run_preempted_then_resumed(b_dir, train, 9, 14, amp::AmpMode::kOff, gpt);
  auto wa = models::weights_of(straight_task->model());
  auto wb = models::weights_of(resumed_task->model());
  ASSERT_EQ(wa.size(), wb.size());
  for (auto& [name, t] : wa) EXPECT_TRUE(torch::equal(t, wb.at(name))) << name;
}

// amp.mode=master: model.safetensors holds the fp32 masters (not their bf16 roundings, which
// the model computes with), and resume from it continues bit for bit.
TEST(Trainer, MasterModeCheckpointsHoldTheFp32MastersAndResumeIsBitIdentical) {
  auto train = test::band_dataset(500, 5);
  const TempDir a_dir("master-a"), b_dir("master-b");
  auto straight = make_setup(a_dir, train, 16);
  straight.amp.mode = amp::AmpMode::kMaster;
  straight.trainer.checkpoint_every = 1000;
  auto straight_task = straight.task;
  Trainer(std::move(straight)).fit();
  const auto saved = Checkpointer::load(*Checkpointer::latest(a_dir / "checkpoints"));
  const auto conv = saved.model.at("stage0.conv0.weight");
  EXPECT_EQ(conv.scalar_type(), torch::kFloat);
  EXPECT_FALSE(torch::equal(conv, conv.to(torch::kBFloat16).to(torch::kFloat))) << "a rounded copy was saved";
  const auto live = straight_task->model().named_parameters()["stage0.conv0.weight"];
  EXPECT_EQ(live.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::equal(live, conv.to(torch::kBFloat16)));
  for (const auto& [key, t] : saved.state) EXPECT_NE(key.rfind("master.", 0), 0u) << "masters stored twice: " << key;

  run_preempted_then_resumed(b_dir, train, 7, 16, amp::AmpMode::kMaster);
  const auto resumed = Checkpointer::load(*Checkpointer::latest(b_dir / "checkpoints"));
  for (const auto& [name, t] : saved.model) EXPECT_TRUE(torch::equal(t, resumed.model.at(name))) << name;
}

// data.name=mnist: training and evaluation batches are normalised with MNIST's pixel
// statistics. All-black images make every input pixel -mean / stddev.
TEST(Trainer, MnistInputsAreNormalisedWithMnistStatistics) {
  class Probe : public models::Mlp {
   public:
    using Mlp::Mlp;
    models::Output forward(const torch::Tensor& x) override {
      seen.push_back(x.flatten()[0].item<double>());
      return Mlp::forward(x);
    }
    std::vector<double> seen;
  };
  const TempDir d("mnist");
  auto black = std::make_shared<data::Dataset>();
  black->images = torch::zeros({40, 1, 28, 28}, torch::kUInt8);
  black->labels = torch::arange(40, torch::kInt64) % 10;
  auto setup = make_setup(d, black, 2);
  setup.data.name = "mnist";
  setup.data.augment = false;
  setup.test_set = black;
  setup.trainer.eval = true;
  models::ModelOptions o;
  o.hidden = {8};
  auto probe = std::make_shared<Probe>(o);
  setup.task = std::make_shared<SupervisedTask>(probe);
  Trainer(std::move(setup)).fit();
  ASSERT_GE(probe->seen.size(), 3u);  // 2 training batches, then evaluation
  for (double v : probe->seen) EXPECT_NEAR(v, -0.1307 / 0.3081, 1e-5);
}

// The trainer's metrics all-reduce has one layout, from Task::loss_terms(): a task whose
// loss returns other terms is stopped with both named.
TEST(Trainer, LossTermsOtherThanTheDeclaredOnesAreAnError) {
  class Undeclared : public SupervisedTask {
   public:
    using SupervisedTask::SupervisedTask;
    std::vector<std::string> loss_terms() const override { return {"nll"}; }
  };
  const TempDir d("terms");
  auto setup = make_setup(d, test::band_dataset(64, 5), 2);
  torch::manual_seed(7);
  setup.task = std::make_shared<Undeclared>(models::make_model(tiny_model()));
  test::expect_error<Error>([&] { Trainer(std::move(setup)).fit(); }, {"'ce'", "'nll'"});
}

TEST(Trainer, GradAccumulationMatchesOneBigBatch) {
  // 2 micro-batches of 32 == 1 batch of 64 (no dropout, no augmentation, SGD).
  auto train = test::band_dataset(256, 8);
  auto run = [&](int64_t batch, int64_t accum) {
    const TempDir d("accum" + std::to_string(accum));
    auto s = make_setup(d, train, 4);
    s.data.batch_size = batch;
    s.data.augment = false;
    s.trainer.grad_accum = accum;
    s.optim.name = "sgd";
    s.optim.schedule = "none";
    s.optim.warmup_steps = 0;
    auto o = tiny_model();
    o.dropout = 0;
    o.batch_norm = false;  // batch statistics would differ between 32 and 64
    torch::manual_seed(7);
    s.task = std::make_shared<SupervisedTask>(models::make_model(o));
    auto task = s.task;
    Trainer(std::move(s)).fit();
    retort::remove_tree(d);
    return models::weights_of(task->model());
  };
  auto big = run(64, 1);
  auto accum = run(32, 2);
  for (auto& [name, t] : big) EXPECT_TRUE(torch::allclose(t, accum.at(name), 1e-5, 1e-6)) << name;
}

// A loss term that overflows at one step: with loss scaling on, that step is skipped and
// metrics.jsonl says so (skipped count, the term that went non-finite, the scale backed off).
class OverflowingTask : public SupervisedTask {
 public:
  OverflowingTask(std::shared_ptr<models::Model> m, int64_t at) : SupervisedTask(std::move(m)), at_(at) {}
  std::vector<std::string> loss_terms() const override { return {"ce", "spike"}; }
  Losses loss(const torch::Tensor& x, const data::Labels& y) override {
    Losses l = SupervisedTask::loss(x, y);
    // inf * loss: the term and every gradient through it overflow at step `at_`.
    auto extra = l.total * (++calls_ == at_ ? std::numeric_limits<float>::infinity() : 0.0f);
    l.terms.emplace_back("spike", extra);
    l.total = l.total + extra;
    return l;
  }

 private:
  int64_t at_, calls_ = 0;
};

// Records the mixup weight of every batch it trains on; stops (as SIGTERM would) after
// `stop_after` optimizer steps when that is > 0.
class MixRecordingTask : public SupervisedTask {
 public:
  MixRecordingTask(std::shared_ptr<models::Model> m, int64_t stop_after)
      : SupervisedTask(std::move(m)), left_(stop_after) {}
  Losses loss(const torch::Tensor& x, const data::Labels& labels) override {
    lams.push_back(labels.mixed() ? labels.lam : -1.0);
    if (labels.mixed()) {
      EXPECT_EQ(labels.y_mix.sizes(), labels.y.sizes());
    }
    return SupervisedTask::loss(x, labels);
  }
  void after_step() override {
    if (left_ > 0 && --left_ == 0) launch::request_stop();
  }
  std::vector<double> lams;

 private:
  int64_t left_;
};

TEST(Trainer, MixupReachesTheTaskAndResumeReproducesItsDraws) {
  const TempDir d("mixup");
  auto train = test::band_dataset(256, 5);
  auto run = [&](double mixup, int64_t stop_after, const std::string& resume) {
    auto setup = make_setup(d, train, 12);
    setup.data.mixup = mixup;
    setup.trainer.checkpoint_every = 1000;
    setup.trainer.resume = resume;
    torch::manual_seed(7);
    auto task = std::make_shared<MixRecordingTask>(models::make_model(tiny_model()), stop_after);
    setup.task = task;
    auto r = Trainer(std::move(setup)).fit();
    launch::clear_stop_request();
    EXPECT_EQ(r.steps, stop_after > 0 ? stop_after : 12);
    return task->lams;
  };
  const auto full = run(0.5, 0, "");
  ASSERT_EQ(full.size(), 12u);
  std::set<double> distinct(full.begin(), full.end());
  EXPECT_EQ(distinct.size(), 12u);  // a draw per batch
  for (double lam : full) {
    EXPECT_GT(lam, 0.0);
    EXPECT_LT(lam, 1.0);
  }
  retort::remove_tree(d);
  fs::create_directories(d);
  const auto first = run(0.5, 5, "");
  const auto rest = run(0.5, 0, "auto");
  EXPECT_EQ(first, std::vector<double>(full.begin(), full.begin() + 5));
  EXPECT_EQ(rest, std::vector<double>(full.begin() + 5, full.end()));
  retort::remove_tree(d);
  fs::create_directories(d);
  for (double lam : run(0.0, 0, "")) EXPECT_EQ(lam, -1.0);  // off: plain labels
}

// Records the label smoothing of every batch it trains on.
class SmoothingRecordingTask : public SupervisedTask {
 public:
  using SupervisedTask::SupervisedTask;
  Losses loss(const torch::Tensor& x, const data::Labels& labels) override {
    seen.push_back(labels.smoothing);
    return SupervisedTask::loss(x, labels);
  }
  std::vector<double> seen;
};

TEST(Trainer, LabelSmoothingReachesTheTaskAndItsLoss) {
  const TempDir d("smoothing");
  for (double eps : {0.0, 0.25}) {
    auto setup = make_setup(d, test::band_dataset(256, 5), 4);
    setup.trainer.label_smoothing = eps;
    torch::manual_seed(7);
    auto task = std::make_shared<SmoothingRecordingTask>(models::make_model(tiny_model()));
    setup.task = task;
    Trainer(std::move(setup)).fit();
    EXPECT_EQ(task->seen, std::vector<double>(4, eps));
    retort::remove_tree(d);
    fs::create_directories(d);
  }
  // SupervisedTask's CE is the smoothed cross-entropy of its logits.
  torch::manual_seed(3);
  SupervisedTask task(models::make_model(tiny_model()));
  task.train(false);
  const auto ds = test::band_dataset(8, 5);
  const auto x = ds->images.to(torch::kFloat) / 255.0;
  const auto y = ds->labels;
  const auto logits = task.model().forward(x).logits;
  const double smooth = task.loss(x, data::Labels(y).smoothed(0.25)).total.item<double>();
  EXPECT_NEAR(smooth, amp::cross_entropy(logits, y, 0.25).item<double>(), 1e-6);
  EXPECT_GT(std::abs(smooth - task.loss(x, y).total.item<double>()), 1e-4);
}

TEST(Trainer, SkippedStepIsInTheMetricsWithTheOverflowingTerm) {
  const TempDir d("overflow");
  auto setup = make_setup(d, test::band_dataset(256, 5), 10);
  setup.trainer.log_every = 1;
  setup.data.augment = false;
  setup.amp.mode = amp::AmpMode::kAutocast;
  setup.amp.loss_scaling = amp::LossScaling::kOn;
  torch::manual_seed(7);
  setup.task = std::make_shared<OverflowingTask>(models::make_model(tiny_model()), 4);
  auto r = Trainer(std::move(setup)).fit();
  EXPECT_EQ(r.steps, 10);
  std::ifstream in(d / "metrics.jsonl");
  int with_overflow = 0;
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    if (j.value("kind", "") != "train") continue;
    ASSERT_TRUE(j.contains("scale")) << line;
    const int64_t step = j.at("step");
    EXPECT_EQ(j.at("skipped").get<int64_t>(), step >= 4 ? 1 : 0) << line;
    EXPECT_DOUBLE_EQ(j.at("scale").get<double>(), step >= 4 ? 32768.0 : 65536.0) << line;
    if (j.contains("overflow")) {
      ++with_overflow;
      EXPECT_EQ(step, 4) << line;
      EXPECT_NE(j.at("overflow").get<std::string>().find("non-finite loss terms: spike"), std::string::npos) << line;
    }
  }
  EXPECT_EQ(with_overflow, 1);
}

namespace {

// The scalars of a run's events files (in TensorBoard's reading order) are the rows of its
// metrics.jsonl: every numeric field but "step" as "<kind>/<field>" at the row's step, in the
// order written; a non-finite number, null in metrics.jsonl, is non-finite there. Returns the
// tags seen.
std::set<std::string> expect_scalars_are_the_rows(const fs::path& run_dir, size_t files_expected) {
  struct Scalar {
    std::string tag;
    int64_t step;
    float value;
    bool finite;
  };
  std::vector<Scalar> rows, scalars;
  std::ifstream in(run_dir / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    const auto row = nlohmann::json::parse(line);
    for (const auto& f : row.items()) {
      if (f.key() == "step" || f.value().is_string()) continue;
      const bool finite = !f.value().is_null();
      rows.push_back({row.at("kind").get<std::string>() + "/" + f.key(), row.at("step").get<int64_t>(),
                      finite ? f.value().get<float>() : 0.f, finite});
    }
  }
  const auto files = test::events_files(run_dir / "tensorboard");
  EXPECT_EQ(files.size(), files_expected);
  for (const auto& file : files) {
    const auto events = test::read_events(file);
    EXPECT_EQ(events.at(0).file_version(), "brain.Event:2") << file;
    for (size_t i = 1; i < events.size(); ++i) {
      EXPECT_EQ(events[i].summary().value_size(), 1) << file << " record " << i;
      for (const auto& v : events[i].summary().value())
        scalars.push_back({v.tag(), events[i].step(), v.simple_value(), std::isfinite(v.simple_value())});
    }
  }
  std::set<std::string> tags;
  EXPECT_EQ(scalars.size(), rows.size());
  for (size_t i = 0; i < std::min(rows.size(), scalars.size()); ++i) {
    const auto &want = rows[i], &got = scalars[i];
    EXPECT_EQ(got.tag, want.tag) << "scalar " << i;
    EXPECT_EQ(got.step, want.step) << want.tag;
    EXPECT_EQ(got.finite, want.finite) << want.tag << " at step " << want.step;
    if (want.finite) {
      EXPECT_EQ(got.value, want.value) << want.tag << " at step " << want.step;
    }
    tags.insert(got.tag);
  }
  return tags;
}

}  // namespace

TEST(Trainer, TensorBoardScalarsAreTheRowsOfMetricsJsonl) {
  const TempDir d("tensorboard");
  auto setup = make_setup(d, test::band_dataset(256, 5), 10);  // 8 steps an epoch: two evals
  setup.trainer.log_every = 3;
  setup.trainer.eval = true;
  setup.test_set = test::band_dataset(64, 4);
  setup.amp.mode = amp::AmpMode::kAutocast;  // loss scale, a skipped step, its overflow string, two terms
  setup.amp.loss_scaling = amp::LossScaling::kOn;
  torch::manual_seed(7);
  setup.task = std::make_shared<OverflowingTask>(models::make_model(tiny_model()), 4);
  Trainer(std::move(setup)).fit();
  const auto tags = expect_scalars_are_the_rows(d, 1);
  for (const char* tag : {"train/loss", "train/loss_ce", "train/loss_spike", "train/lr", "train/scale", "train/skipped",
                          "train/samples_per_s", "train/epoch", "eval/loss", "eval/accuracy", "eval/epoch"})
    EXPECT_EQ(tags.count(tag), 1u) << tag;
}

TEST(Trainer, ResumedRunAddsAnEventsFile) {
  const TempDir d("tensorboard-resume");
  run_preempted_then_resumed(d, test::band_dataset(256, 5), 6, 12);
  expect_scalars_are_the_rows(d, 2);
}
