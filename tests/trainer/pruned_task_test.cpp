// Fine-tuning with masks through trainer::Trainer: pruned weights stay exactly zero under
// AdamW with weight decay, gradient accumulation and mixed precision; masks survive
// checkpoint and resume; PrunedTask composes with distillation.
#include <gtest/gtest.h>

#include "core/fs.h"
#include "tests/common/synthetic.h"
#include "core/error.h"
#include "tests/prune/helpers.h"
#include "trainer/checkpoint.h"
#include "trainer/distill_task.h"
#include "trainer/pruned_task.h"
#include "trainer/trainer.h"
#include "tests/trainer/setup.h"

using retort::test::TempDir;

namespace fs = std::filesystem;
using namespace retort;
using namespace retort::trainer;
using test::expect_error;

namespace {

TrainerSetup setup(const fs::path& run_dir, std::shared_ptr<Task> task, int64_t steps) {
  auto s = test::quiet_setup(run_dir, std::move(task), test::band_dataset(256, 1), steps, 3);
  s.trainer.checkpoint_every = 100;
  s.optim.name = "adamw";
  s.optim.lr = 1e-2;
  s.optim.weight_decay = 0.1;
  s.config_yaml = "test: true\n";
  return s;
}

/// Magnitude masks at 60 % plus structured ones on fc0: both kinds in one run.
prune::Masks masks_for(const models::Model& model) {
  prune::PruneOptions o;
  o.method = "l1_structured";
  o.sparsity = 0.5;
  o.layers = YAML::Load("{stage0.conv0: 0.0, stage1.conv0: 0.0}");
  auto m = prune::compute_masks(model, o);
  o.method = "magnitude";
  o.sparsity = 0.6;
  o.layers = YAML::Node(YAML::NodeType::Map);
  return prune::compute_masks(model, o, m);
}

/// Pruned entries that are not exactly zero, over all masks.
int64_t regrown(const models::Model& model, const prune::Masks& masks) {
  int64_t n = 0;
  auto params = model.named_parameters();
  for (const auto& [name, m] : masks.tensors())
    n += params[name].detach().to(torch::kCPU).masked_select(m.logical_not()).ne(0).sum().item<int64_t>();
  return n;
}

/// Entries a mask keeps whose value changed since `before` (training happened).
int64_t changed(const models::Model& model, const std::map<std::string, torch::Tensor>& before) {
  int64_t n = 0;
  for (const auto& [name, t] : models::weights_of(model))
    if (t.is_floating_point()) n += t.to(torch::kFloat32).ne(before.at(name).to(torch::kFloat32)).sum().item<int64_t>();
  return n;
}

struct Mode {
  std::string name, amp, dtype;
  int64_t accum;
};
void PrintTo(const Mode& m, std::ostream* os) { *os << m.name; }

}  // namespace

class FineTune : public ::testing::TestWithParam<Mode> {};

TEST_P(FineTune, PrunedWeightsStayZeroThroughAdamWAndWeightDecay) {
  const Mode mode = GetParam();
  const TempDir dir("finetune-" + mode.name);
  torch::manual_seed(5);
  auto model = models::make_model(test::tiny_cnn());
  const auto masks = masks_for(*model);
  ASSERT_GT(masks.pruned(), 1000);
  auto task = std::make_shared<PrunedTask>(std::make_shared<SupervisedTask>(model), masks);
  EXPECT_EQ(regrown(*model, masks), 0);  // the constructor masks the weights
  const auto before = models::weights_of(*model);
  auto s = setup(dir, task, 12);
  s.amp.mode = config::enum_value<amp::AmpMode>(mode.amp, "amp.mode");
  s.amp.dtype = config::enum_value<c10::ScalarType>(mode.dtype, "amp.dtype");
  s.trainer.grad_accum = mode.accum;
  Trainer(std::move(s)).fit();
  EXPECT_EQ(regrown(*model, masks), 0);
  EXPECT_GT(changed(*model, before), 1000);
  // The checkpoint carries the masks as task state.
  auto ckpt = Checkpointer::load(Checkpointer::resolve(dir));
  EXPECT_TRUE(ckpt.state.count("task.mask.fc0.weight"));
  EXPECT_TRUE(torch::equal(ckpt.state.at("task.mask.fc0.weight"), masks.at("fc0.weight")));
  // The checkpoint's weights (in amp master mode the fp32 masters the optimizer steps) stay
  // zero too (the gradients were masked before they reached them), not only the model's.
  for (const auto& [name, m] : masks.tensors()) {
    const auto& saved = ckpt.model.at(name);
    EXPECT_EQ(saved.scalar_type(), torch::kFloat) << name;
    EXPECT_EQ(saved.masked_select(m.logical_not()).ne(0).sum().item<int64_t>(), 0) << name;
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, FineTune,
                         ::testing::Values(Mode{"fp32", "off", "bf16", 1}, Mode{"autocast_accum", "autocast", "bf16", 2},
                                           Mode{"master_accum", "master", "bf16", 2}),
                         [](const auto& info) { return info.param.name; });

TEST(FineTune, WithoutThePrunedTaskTheWeightsRegrow) {
  // The control: the same masked start trained as a plain task loses its zeros.
  const TempDir dir("regrow");
  torch::manual_seed(5);
  auto model = models::make_model(test::tiny_cnn());
  const auto masks = masks_for(*model);
  masks.apply(*model);
  Trainer(setup(dir, std::make_shared<SupervisedTask>(model), 5)).fit();
  // (Whole pruned channels get no gradient, so mostly the unstructured zeros regrow.)
  EXPECT_GT(regrown(*model, masks), masks.pruned() / 10);
}

TEST(FineTune, GradientsOfPrunedWeightsAreZeroAsTheyArrive) {
  torch::manual_seed(6);
  auto model = models::make_model(test::tiny_cnn());
  const auto masks = masks_for(*model);
  PrunedTask task(std::make_shared<SupervisedTask>(model), masks);
  auto l = task.loss(torch::randn({4, 1, 28, 28}), torch::tensor({1, 2, 3, 4}));
  l.total.backward();
  auto params = model->named_parameters();
  for (const auto& [name, m] : masks.tensors()) {
    const auto& g = params[name].grad();
    ASSERT_TRUE(g.defined()) << name;
    EXPECT_TRUE(g.masked_select(m.logical_not()).eq(0).all().item<bool>()) << name;
    EXPECT_TRUE(g.masked_select(m).ne(0).any().item<bool>()) << name;
  }
}

TEST(FineTune, MasksSurviveCheckpointAndResume) {
  const TempDir dir("resume");
  torch::manual_seed(7);
  auto model = models::make_model(test::tiny_cnn());
  const auto masks = masks_for(*model);
  {
    auto s = setup(dir, std::make_shared<PrunedTask>(std::make_shared<SupervisedTask>(model), masks), 6);
    s.trainer.checkpoint_every = 3;
    Trainer(std::move(s)).fit();
  }
  // A fresh model and a task that knows no masks: resume brings them back.
  torch::manual_seed(8);
  auto fresh = models::make_model(test::tiny_cnn());
  auto task = std::make_shared<PrunedTask>(std::make_shared<SupervisedTask>(fresh), prune::Masks());
  auto s = setup(dir, task, 12);
  s.trainer.resume = "auto";
  Trainer(std::move(s)).fit();
  ASSERT_EQ(task->masks().size(), masks.size());
  for (const auto& [name, m] : masks.tensors()) EXPECT_TRUE(torch::equal(task->masks().at(name), m)) << name;
  EXPECT_EQ(regrown(*fresh, masks), 0);
  EXPECT_EQ(Checkpointer::load(*Checkpointer::latest(dir / "checkpoints")).step, 12);

  // A checkpoint without masks cannot resume a pruned fine-tuning.
  PrunedTask other(std::make_shared<SupervisedTask>(models::make_model(test::tiny_cnn())), prune::Masks());
  expect_error<CheckpointError>([&] { other.load_state_dict({}); }, {"no pruning masks", "task.mask"});
  // Masks of another model are named.
  auto wrong = masks.state_dict();
  wrong["mask.fc9.weight"] = torch::ones({2, 2}, torch::kBool);
  expect_error<CheckpointError>([&] { other.load_state_dict(wrong); }, {"unknown parameter 'fc9.weight'"});
}

TEST(FineTune, ComposesWithDistillationFromTheDenseTeacher) {
  const TempDir dir("distill");
  torch::manual_seed(9);
  auto teacher = models::make_model(test::tiny_cnn());
  distill::freeze(*teacher);
  auto student = models::make_model(test::tiny_cnn());
  {
    torch::NoGradGuard g;
    auto t = teacher->named_parameters();
    for (auto& kv : student->named_parameters()) kv.value().copy_(t[kv.key()]);  // prune a copy of the teacher
  }
  const auto masks = masks_for(*student);
  auto s = setup(dir, nullptr, 8);
  distill::Distiller d(teacher, student, distill::DistillOptions());
  auto inner = std::make_shared<DistillTask>(d, sample_batch(*s.train_set));
  auto task = std::make_shared<PrunedTask>(inner, masks);
  s.task = task;
  const auto teacher_before = models::weights_of(*teacher);
  Trainer(std::move(s)).fit();
  EXPECT_EQ(regrown(*student, masks), 0);
  EXPECT_EQ(changed(*teacher, teacher_before), 0);  // the dense teacher stays as it was
  EXPECT_GT(regrown(*teacher, masks), masks.pruned() / 2);  // the student's masks never touch the teacher
  auto ckpt = Checkpointer::load(Checkpointer::resolve(dir));
  EXPECT_TRUE(ckpt.state.count("task.mask.fc0.weight"));
}
