// trainer::DistillTask with trainer::Trainer: a short distillation improves the student,
// the teacher stays bit-identical, projections are checkpointed but never exported.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <tuple>

#include "core/fs.h"
#include "tests/common/synthetic.h"
#include "core/error.h"
#include "data/data.h"
#include "models/models.h"
#include "tests/distill/helpers.h"
#include "trainer/checkpoint.h"
#include "trainer/distill_task.h"
#include "trainer/trainer.h"
#include "tests/common/gpt.h"
#include "tests/common/temp_dir.h"
#include "tests/trainer/setup.h"

using retort::test::TempDir;

namespace fs = std::filesystem;
using namespace retort;
using test::expect_error;

namespace {

models::ModelOptions teacher_options() {
  models::ModelOptions o;
  o.channels = {8, 16};
  o.convs_per_stage = 1;
  o.hidden = {32};
  return o;
}

models::ModelOptions student_options() { return test::tiny_cnn(12); }

const char* kTeacherConfig =
    "model:\n  name: cnn\n  channels: [8, 16]\n  convs_per_stage: 1\n  hidden: [32]\ntrainer:\n  max_steps: 30\n";

trainer::TrainerSetup setup_for(std::shared_ptr<trainer::Task> task, std::shared_ptr<data::Dataset> train,
                                const fs::path& run_dir, int64_t steps) {
  auto s = test::quiet_setup(run_dir, std::move(task), std::move(train), steps, 5);
  s.trainer.log_every = 10;
  s.optim.lr = 5e-3;
  s.optim.warmup_steps = 2;
  return s;
}

/// A teacher trained for a few steps, saved as a checkpoint in `run_dir` (config included).
void train_teacher(const fs::path& run_dir, std::shared_ptr<data::Dataset> train) {
  torch::manual_seed(11);
  auto task = std::make_shared<trainer::SupervisedTask>(models::make_model(teacher_options()));
  auto s = setup_for(task, std::move(train), run_dir, 30);
  s.config_yaml = kTeacherConfig;
  trainer::Trainer(std::move(s)).fit();
}

double eval_loss(distill::Distiller& d, const torch::Tensor& x, const torch::Tensor& y, const std::string& term) {
  torch::NoGradGuard no_grad;
  const bool was = d->student().is_training();
  d->train(false);
  auto l = d->forward(x, y);
  d->train(was);
  if (term.empty()) return l.total.item<double>();
  for (const auto& [k, v] : l.terms)
    if (k == term) return v.item<double>();
  throw std::runtime_error("no term " + term);
}

}  // namespace

TEST(DistillTask, ShortDistillationImprovesTheStudentAndFreezesTheTeacher) {
  auto train = test::band_dataset(384, 21);
  const TempDir teacher_dir("teacher");
  train_teacher(teacher_dir, train);

  // The teacher as the CLI loads it: from the run directory (weights + config.yaml model:).
  distill::DistillOptions opts;
  opts.teacher_checkpoint = teacher_dir.string();
  opts.weight_kl = 0.5;
  opts.temperature = 2.0;
  opts.layers = distill::parse_layer_map(YAML::Node("uniform"));
  auto teacher = trainer::load_teacher(opts);
  EXPECT_FALSE(teacher->is_training());
  EXPECT_EQ(teacher->options().channels, (std::vector<int64_t>{8, 16}));
  const auto teacher_before = models::weights_of(*teacher);

  torch::manual_seed(12);
  auto student = models::make_model(student_options());
  distill::Distiller distiller(teacher, student, opts);
  auto task = std::make_shared<trainer::DistillTask>(distiller, trainer::sample_batch(*train));
  ASSERT_TRUE(distiller->prepared());

  // What the optimizer sees: the student's parameters, then the projections; no teacher.
  const auto trainable = task->trainable();
  std::vector<std::string> names;
  for (const auto& kv : trainable) names.push_back(kv.first);
  EXPECT_NE(std::find(names.begin(), names.end(), "distill.proj.fc0.weight"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "distill.proj.stage1.weight"), names.end());
  EXPECT_EQ(trainable.size(), student->parameters().size() + distiller->parameters().size());

  auto probe = test::band_dataset(128, 22);
  auto px = trainer::sample_batch(*probe, 128);
  auto py = probe->labels;
  const double total_before = eval_loss(distiller, px, py, "");
  const double ce_before = eval_loss(distiller, px, py, "ce");
  const double kl_before = eval_loss(distiller, px, py, "kl");

  const TempDir run_dir("student");
  auto s = setup_for(task, train, run_dir, 36);
  s.config_yaml = "distill: {}\n";
  trainer::Trainer(std::move(s)).fit();

  const double total_after = eval_loss(distiller, px, py, "");
  EXPECT_LT(total_after, 0.7 * total_before) << total_before << " -> " << total_after;
  EXPECT_LT(eval_loss(distiller, px, py, "ce"), ce_before);
  EXPECT_LT(eval_loss(distiller, px, py, "kl"), kl_before);

  // The teacher: no gradients, still in eval mode, bit-identical weights.
  EXPECT_FALSE(teacher->is_training());
  for (const auto& p : teacher->parameters()) EXPECT_FALSE(p.grad().defined());
  for (const auto& [name, before] : teacher_before)
    EXPECT_TRUE(torch::equal(before, models::weights_of(*teacher).at(name))) << name;

  // Per-term losses reached metrics.jsonl.
  std::ifstream metrics(run_dir / "metrics.jsonl");
  std::string line, all;
  while (std::getline(metrics, line)) all += line;
  for (const char* key : {"\"loss_ce\"", "\"loss_kl\"", "\"loss_mse.stage0\"", "\"loss_mse.fc0\""})
    EXPECT_NE(all.find(key), std::string::npos) << key;

  // Checkpoint: the projections are in the state, never in the exported model.
  auto ckpt = trainer::Checkpointer::load(trainer::Checkpointer::resolve(run_dir));
  EXPECT_EQ(ckpt.model.size(), models::weights_of(*student).size());
  for (const auto& kv : ckpt.model) EXPECT_TRUE(models::weights_of(*student).count(kv.first)) << kv.first;
  for (const auto& kv : ckpt.model) EXPECT_NE(kv.first.rfind("proj.", 0), 0u) << kv.first;
  ASSERT_TRUE(ckpt.state.count("extra.distill.proj.fc0.weight"));
  EXPECT_TRUE(
      torch::equal(ckpt.state.at("extra.distill.proj.fc0.weight"), distiller->named_parameters()["proj.fc0.weight"]));
  for (const auto& kv : models::weights_of(task->model())) EXPECT_NE(kv.first.rfind("proj.", 0), 0u) << kv.first;

}

TEST(DistillTask, LoadTeacherFromASafetensorsFile) {
  const TempDir dir("weights");
  torch::manual_seed(3);
  auto model = models::make_model(teacher_options());
  models::save_safetensors(dir / "t.safetensors", models::weights_of(*model));
  distill::DistillOptions o;
  o.teacher_weights = (dir / "t.safetensors").string();
  o.teacher_model = models::read_model_options(YAML::Load("{name: cnn, channels: [8, 16], convs_per_stage: 1, hidden: [32]}"), "distill.teacher.model");
  auto t = trainer::load_teacher(o);
  for (const auto& [name, w] : models::weights_of(*model))
    EXPECT_TRUE(torch::equal(w, models::weights_of(*t).at(name))) << name;
  for (const auto& p : t->parameters()) EXPECT_FALSE(p.requires_grad());
  // The wrong architecture: every mis-fitting tensor named, with the file.
  o.teacher_model = models::read_model_options(YAML::Load("{name: cnn, channels: [8, 32], convs_per_stage: 1, hidden: [32]}"), "distill.teacher.model");
  expect_error<CheckpointError>([&] { trainer::load_teacher(o); }, {"t.safetensors", "mis-shaped", "stage1.conv0.weight"});
  o.teacher_model.reset();
  expect_error<ConfigError>([&] { trainer::load_teacher(o); }, {"distill.teacher.model: required"});
}

TEST(DistillTask, TeacherEnsembleFromRunDirectoriesAveragesTheLogits) {
  auto train = test::band_dataset(192, 23);
  const TempDir a("ens-a"), b("ens-b");
  train_teacher(a, train);
  torch::manual_seed(99);  // a second teacher, other weights
  {
    auto task = std::make_shared<trainer::SupervisedTask>(models::make_model(teacher_options()));
    auto s = setup_for(task, train, b, 10);
    s.config_yaml = kTeacherConfig;
    trainer::Trainer(std::move(s)).fit();
  }
  distill::DistillOptions o;
  o.teacher_checkpoint = a.string();
  auto single_a = trainer::load_teacher(o);
  o.teacher_checkpoint = b.string();
  auto single_b = trainer::load_teacher(o);
  o.teacher_checkpoint = a.string();
  o.teacher_ensemble = {b.string()};
  auto ens = trainer::load_teacher(o);
  auto* e = dynamic_cast<distill::TeacherEnsemble*>(ens.get());
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->size(), 2u);
  EXPECT_FALSE(ens->is_training());
  for (const auto& p : ens->parameters()) EXPECT_FALSE(p.requires_grad());
  EXPECT_EQ(models::count_parameters(*ens), 2 * models::count_parameters(*single_a));
  const auto x = trainer::sample_batch(*train, 5);
  torch::NoGradGuard g;
  const auto oa = single_a->forward(x), ob = single_b->forward(x), oe = ens->forward(x);
  EXPECT_FALSE(torch::allclose(oa.logits, ob.logits));
  EXPECT_TRUE(torch::allclose(oe.logits, (oa.logits + ob.logits) / 2, 1e-5, 1e-6));
  ASSERT_EQ(oe.hidden.size(), oa.hidden.size());
  for (size_t i = 0; i < oa.hidden.size(); ++i) EXPECT_TRUE(torch::equal(oe.hidden[i], oa.hidden[i])) << i;
  EXPECT_EQ(ens->hidden_names(), single_a->hidden_names());

  // A bad extra teacher is named by its place in the list.
  o.teacher_ensemble = {b.string(), "/nonexistent/third-teacher"};
  expect_error<CheckpointError>([&] { trainer::load_teacher(o); }, {"/nonexistent/third-teacher"});
  o.teacher_ensemble = {""};
  expect_error<ConfigError>([&] { trainer::load_teacher(o); }, {"distill.teacher.ensemble[0]", "empty path"});
}

TEST(DistillTask, TeacherEnsembleMembersMustAgreeOnClassesAndInput) {
  auto t = models::make_model(teacher_options());
  auto other = teacher_options();
  other.num_classes = 7;
  expect_error<ConfigError>(
      [&] { distill::TeacherEnsemble({t, models::make_model(other)}, "distill.teacher.ensemble"); },
      {"distill.teacher.ensemble", "teacher 1", "num_classes 7", "has 10"});
  other = teacher_options();
  other.image_size = 32;
  expect_error<ConfigError>([&] { distill::TeacherEnsemble({t, models::make_model(other)}, "k"); },
                            {"image_size 32"});
  expect_error<ConfigError>([&] { distill::TeacherEnsemble({}, "k"); }, {"at least one teacher"});
  // A one-member ensemble is that teacher.
  distill::TeacherEnsemble one({t}, "k");
  const auto x = torch::randn({3, 1, 28, 28});
  torch::NoGradGuard g;
  EXPECT_TRUE(torch::equal(one.forward(x).logits, t->forward(x).logits));
}

TEST(DistillTask, MissingTeacherCheckpointIsNamed) {
  distill::DistillOptions o;
  o.teacher_checkpoint = "/nonexistent/teacher-run";
  expect_error<CheckpointError>([&] { trainer::load_teacher(o); }, {"/nonexistent/teacher-run"});
}

TEST(DistillTask, TrainKeepsTheTeacherInEval) {
  auto teacher = models::make_model(teacher_options());
  auto student = models::make_model(student_options());
  distill::Distiller d(teacher, student, distill::DistillOptions());
  trainer::DistillTask task(d, torch::randn({2, 1, 28, 28}));
  task.train(true);
  EXPECT_TRUE(student->is_training());
  EXPECT_TRUE(d->is_training());
  EXPECT_FALSE(teacher->is_training());
  task.train(false);
  EXPECT_FALSE(student->is_training());
  EXPECT_EQ(&task.model(), student.get());
  ASSERT_EQ(task.extra_modules().size(), 1u);
  EXPECT_EQ(task.extra_modules()[0].first, "distill");
}

namespace {

/// A language-model distillation on 99 aligned blocks of 16 tokens: the teacher (a random
/// gpt saved as a weights file), the student's options and the distill section.
struct LmDistillation {
  TempDir dir{"lm-distill"};
  std::shared_ptr<data::Dataset> train = std::make_shared<data::Dataset>();
  models::ModelOptions teacher_model = test::gpt_options(64, 16, 32, 2, 4, 0);
  models::ModelOptions student_model = test::gpt_options(64, 16, 16, 1, 2, 0);
  distill::DistillOptions opts;

  LmDistillation() {
    std::vector<int32_t> ids(1600);
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>((i * 7 + i / 13) % 61);
    data::write_token_file(dir / "train.tokens", ids, {data::TokenFormat::kRetort, 64, "bytes", 0});
    train->text = std::make_shared<data::TextWindows>(std::make_shared<data::TokenFile>(dir / "train.tokens", 64), 16,
                                                      data::WindowSampling::kBlocks, 0);
    torch::manual_seed(5);
    models::save_safetensors(dir / "teacher.safetensors", models::weights_of(*models::make_model(teacher_model)), {});
    opts.teacher_weights = (dir / "teacher.safetensors").string();
    opts.teacher_model = teacher_model;
    opts.weight_ce = 0.5;
    opts.weight_kl = 0.5;
    opts.weight_reverse_kl = 0.25;
    opts.weight_mse = 0.0;
    opts.temperature = 2.0;
  }

  distill::TeacherCacheSpec spec(int64_t top_k, distill::DistillOptions::CacheDtype dtype) {
    opts.cache_top_k = top_k;
    opts.cache_dtype = dtype;
    return distill::cache_spec(opts, trainer::teacher_cache_key(opts, *train->text, student_model));
  }

  /// The student's weights after 8 steps of 32 blocks, from the live teacher or a cache.
  std::map<std::string, torch::Tensor> train_student(const std::string& name,
                                                     std::shared_ptr<const distill::TeacherCache> cache = nullptr) {
    torch::manual_seed(9);
    auto student = models::make_model(student_model);
    distill::Distiller d(cache ? nullptr : trainer::load_teacher(opts), student, opts);
    auto task = std::make_shared<trainer::DistillTask>(d, trainer::sample_batch(*train), cache);
    fs::create_directories(dir / name);
    trainer::Trainer(setup_for(task, train, dir / name, 8)).fit();
    return models::weights_of(*student);
  }
};

double max_difference(const std::map<std::string, torch::Tensor>& a, const std::map<std::string, torch::Tensor>& b) {
  double worst = 0;
  for (const auto& [name, t] : a) worst = std::max(worst, (t - b.at(name)).abs().max().item<double>());
  return worst;
}

}  // namespace

// A whole-vocabulary fp32 cache trains the same student as the live teacher (same blocks,
// same seed) up to rounding: the cache ran the teacher on blocks batched in order, training
// batches them shuffled, and a matrix product's last bit depends on the rows batched with
// it (the stored distributions differ by about 2e-7, tests/distill/teacher_cache_test.cpp).
// Lower-precision storage and a top-K cut move the student further, within the bounds stated
// here: 8 AdamW steps at lr 5e-3 move a weight by up to about 0.04.
TEST(DistillTask, LanguageModelFromACacheTrainsTheLiveTeachersStudent) {
  LmDistillation lm;
  const auto live = lm.train_student("live");
  using D = distill::DistillOptions::CacheDtype;
  auto teacher = trainer::load_teacher(lm.opts);
  const std::tuple<std::string, int64_t, D, double> caches[] = {{"whole-fp32", 0, D::kFp32, 1e-5},
                                                               {"whole-fp16", 0, D::kFp16, 1e-2},
                                                               {"whole-bf16", 0, D::kBf16, 2e-2},
                                                               {"top4-fp32", 4, D::kFp32, 5e-2}};
  for (const auto& [name, top_k, dtype, bound] : caches) {
    distill::write_teacher_cache(*teacher, *lm.train->text, lm.spec(top_k, dtype), lm.dir / name);
    const auto cached = lm.train_student("from-" + name, std::make_shared<distill::TeacherCache>(lm.dir / name));
    const double difference = max_difference(live, cached);
    EXPECT_LT(difference, bound) << name;
  }
}

TEST(DistillTask, ACacheStandsForTheTeachersLogitsAlone) {
  LmDistillation lm;
  lm.opts.weight_mse = 0.3;
  expect_error<ConfigError>([&] { distill::Distiller(nullptr, models::make_model(lm.student_model), lm.opts); },
                            {"distill.cache.dir", "dkd, mse, cosine and attention need the live teacher"});
  lm.opts.teacher_ensemble = {"/some/other/run"};
  lm.opts.teacher_checkpoint = "/some/run";
  lm.opts.teacher_weights.clear();
  lm.opts.teacher_model.reset();
  expect_error<ConfigError>([&] { trainer::teacher_cache_key(lm.opts, *lm.train->text, lm.student_model); },
                            {"cannot stand for distill.teacher.ensemble"});
}

// A teacher whose run read another tokenizer's tokens is refused before training, naming
// both tokenizers (the vocabulary sizes may agree; the ids would not mean the same bytes).
TEST(DistillTask, ATeacherOfAnotherTokenizerIsRefusedNamingBoth) {
  LmDistillation lm;
  torch::manual_seed(1);
  auto task = std::make_shared<trainer::SupervisedTask>(models::make_model(lm.teacher_model));
  fs::create_directories(lm.dir / "teacher-run");
  auto s = setup_for(task, lm.train, lm.dir / "teacher-run", 1);
  s.config_yaml =
      "model:\n  name: gpt\n  vocab_size: 64\n  context: 16\n  dim: 32\n  depth: 2\n  heads: 4\n"
      "data:\n  name: text\n  tokenizer:\n    name: gpt2\n";
  trainer::Trainer(std::move(s)).fit();
  distill::DistillOptions o = lm.opts;
  o.teacher_weights.clear();
  o.teacher_model.reset();
  o.teacher_checkpoint = (lm.dir / "teacher-run").string();
  data::DataOptions run_data;
  run_data.name = "text";
  run_data.tokenizer.name = "bytes";
  expect_error<ConfigError>([&] { trainer::load_teacher(o, run_data); },
                            {"distill.teacher.checkpoint", "tokens of the 'gpt2' tokenizer",
                             "this run reads 'bytes' tokens (data.tokenizer.name)"});
  run_data.tokenizer.name = "gpt2";
  EXPECT_NO_THROW(trainer::load_teacher(o, run_data));
}
