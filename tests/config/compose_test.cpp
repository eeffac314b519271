// Composition: defaults lists, _self_ order, nested groups, packages, group and key
// overrides, interpolation after overrides, lookup order, errors; list_groups.
#include <gtest/gtest.h>
#include <ctime>

#include "config/config.h"
#include "config/value.h"
#include "helpers.h"

namespace retort::config {
namespace {

using testing::config_error;
using testing::TempTree;

// A recipe tree like the real one:
//   <tmp>/recipes/{model,optim,data}/...   config groups
//   <tmp>/recipes/fmnist/*.yaml            recipes
class ConfigCompose : public ::testing::Test {
 protected:
  void SetUp() override {
    t.write("recipes/model/cnn_small.yaml", "width: 32\ndepth: 2\n");
    t.write("recipes/model/cnn_large.yaml", "width: 128\ndepth: 4\n");
    t.write("recipes/model/mlp.yaml",
            "defaults:\n  - act: relu\n  - /optim: sgd\nhidden: 64\nact: {inplace: true}\n");
    t.write("recipes/model/act/relu.yaml", "name: relu\n");
    t.write("recipes/model/act/gelu.yaml", "name: gelu\n");
    t.write("recipes/optim/adamw.yaml", "name: adamw\nlr: 1e-3\nweight_decay: 0.01\n");
    t.write("recipes/optim/sgd.yaml", "name: sgd\nlr: 0.1\n");
    t.write("recipes/data/fmnist.yaml", "name: fmnist\nbatch_size: 64\n");
    t.write("recipes/fmnist/base.yaml", "defaults:\n  - data: fmnist\ntrainer:\n  max_epochs: 10\n  seed: 1\n");
  }

  fs::path recipe(const std::string& name, const std::string& text) { return t.write("recipes/fmnist/" + name, text); }

  std::string composed(const fs::path& r, std::vector<std::string> overrides = {}) {
    return emit(compose({r, std::move(overrides), {}}).config);
  }

  TempTree t;
};

TEST_F(ConfigCompose, GroupContentGoesUnderTheGroupKey) {
  auto r = recipe("teacher.yaml", "defaults:\n  - model: cnn_large\n  - optim: adamw\n");
  Composed c = compose({r, {}, {}});
  EXPECT_EQ(emit(c.config),
            "model:\n  width: 128\n  depth: 4\n"
            "optim:\n  name: adamw\n  lr: 1e-3\n  weight_decay: 0.01\n");
  EXPECT_EQ(c.choices, (std::map<std::string, std::string>{{"model", "cnn_large"}, {"optim", "adamw"}}));
  EXPECT_EQ(c.recipe_text, "defaults:\n  - model: cnn_large\n  - optim: adamw\n");
}

TEST_F(ConfigCompose, OwnKeysComeLastWithoutSelf) {
  auto r = recipe("r.yaml", "defaults:\n  - optim: adamw\noptim:\n  lr: 3e-4\ntrainer: {max_epochs: 2}\n");
  EXPECT_EQ(composed(r), "optim:\n  name: adamw\n  lr: 3e-4\n  weight_decay: 0.01\ntrainer:\n  max_epochs: 2\n");
}

TEST_F(ConfigCompose, SelfFirstLetsDefaultsOverride) {
  auto r = recipe("r.yaml", "defaults:\n  - _self_\n  - optim: adamw\noptim:\n  lr: 3e-4\n  momentum: 0.9\n");
  EXPECT_EQ(composed(r), "optim:\n  lr: 1e-3\n  momentum: 0.9\n  name: adamw\n  weight_decay: 0.01\n");
}

TEST_F(ConfigCompose, SelfInTheMiddle) {
  auto r = recipe("r.yaml",
                  "defaults:\n  - optim: adamw\n  - _self_\n  - data: fmnist\n"
                  "optim: {lr: 5e-4}\ndata: {batch_size: 8}\n");
  EXPECT_EQ(composed(r),
            "optim:\n  name: adamw\n  lr: 5e-4\n  weight_decay: 0.01\n"
            "data:\n  batch_size: 64\n  name: fmnist\n");
}

TEST_F(ConfigCompose, NestedDefaultsInGroupFiles) {
  // model/mlp.yaml pulls model/act (relative) and /optim (absolute); its own keys come last.
  auto r = recipe("r.yaml", "defaults:\n  - model: mlp\n");
  Composed c = compose({r, {}, {}});
  EXPECT_EQ(emit(c.config),
            "model:\n  act:\n    name: relu\n    inplace: true\n  hidden: 64\n"
            "optim:\n  name: sgd\n  lr: 0.1\n");
  EXPECT_EQ(c.choices,
            (std::map<std::string, std::string>{{"model", "mlp"}, {"model/act", "relu"}, {"optim", "sgd"}}));
  // The nested group is overridden by its full path.
  EXPECT_EQ(composed(r, {"model/act=gelu"}),
            "model:\n  act:\n    name: gelu\n    inplace: true\n  hidden: 64\noptim:\n  name: sgd\n  lr: 0.1\n");
}

TEST_F(ConfigCompose, SlashGroupsInTheRecipe) {
  auto r = recipe("r.yaml", "defaults:\n  - model/act: gelu\n");
  EXPECT_EQ(composed(r), "model:\n  act:\n    name: gelu\n");
}

TEST_F(ConfigCompose, ConfigDefaultsInheritARecipe) {
  auto r = recipe("student.yaml", "defaults:\n  - base\n  - model: cnn_small\n  - _self_\ntrainer: {max_epochs: 3}\n");
  EXPECT_EQ(composed(r),
            "data:\n  name: fmnist\n  batch_size: 64\ntrainer:\n  max_epochs: 3\n  seed: 1\n"
            "model:\n  width: 32\n  depth: 2\n");
}

TEST_F(ConfigCompose, OverrideEntriesChangeNestedChoices) {
  auto r = recipe("r.yaml", "defaults:\n  - model: mlp\n  - override model/act: gelu\n  - override optim: adamw\n");
  Composed c = compose({r, {}, {}});
  EXPECT_EQ(c.choices.at("model/act"), "gelu");
  EXPECT_EQ(c.choices.at("optim"), "adamw");
  // The command line wins over an override entry.
  EXPECT_EQ(compose({r, {"model/act=relu"}, {}}).choices.at("model/act"), "relu");
  auto bad = recipe("bad.yaml", "defaults:\n  - model: cnn_small\n  - override optim: adamw\n");
  EXPECT_EQ(config_error([&] { compose({bad, {}, {}}); }),
            "In '" + bad.string() + "': could not override 'optim': no match in the defaults list below it");
}

TEST_F(ConfigCompose, Packages) {
  auto r = recipe("distill.yaml",
                  "defaults:\n  - model@teacher: cnn_large\n  - model@student: cnn_small\n"
                  "  - optim@_global_: sgd\n");
  Composed c = compose({r, {"model@student=mlp"}, {}});
  EXPECT_EQ(emit(c.config),
            "teacher:\n  width: 128\n  depth: 4\n"
            "student:\n  act:\n    name: relu\n    inplace: true\n  hidden: 64\n"
            "optim:\n  name: sgd\n  lr: 0.1\n"
            "name: sgd\nlr: 0.1\n");
  EXPECT_EQ(c.choices.at("model@teacher"), "cnn_large");
  EXPECT_EQ(c.choices.at("model@student"), "mlp");
  EXPECT_EQ(c.choices.at("model/act@student.act"), "relu");
}

TEST_F(ConfigCompose, PackageHeader) {
  t.write("recipes/hw/gpu.yaml", "# @package _global_\ntrainer:\n  device: cuda\n");
  t.write("recipes/hw/cpu.yaml", "# some comment\n# @package runtime.hw\ndevice: cpu\n");
  auto r = recipe("r.yaml", "defaults:\n  - hw: gpu\ntrainer: {max_epochs: 1}\n");
  EXPECT_EQ(composed(r), "trainer:\n  device: cuda\n  max_epochs: 1\n");
  EXPECT_EQ(composed(r, {"hw=cpu"}), "runtime:\n  hw:\n    device: cpu\ntrainer:\n  max_epochs: 1\n");
}

TEST_F(ConfigCompose, GroupOverridesFromTheCommandLine) {
  auto r = recipe("r.yaml", "defaults:\n  - model: cnn_small\n  - optim: adamw\n");
  Composed c = compose({r, {"model=cnn_large", "+data=fmnist", "~optim"}, {}});
  EXPECT_EQ(emit(c.config), "model:\n  width: 128\n  depth: 4\ndata:\n  name: fmnist\n  batch_size: 64\n");
  EXPECT_EQ(c.choices, (std::map<std::string, std::string>{{"model", "cnn_large"}, {"data", "fmnist"}}));
  EXPECT_EQ(c.overrides, (std::vector<std::string>{"model=cnn_large", "+data=fmnist", "~optim"}));
  // ++ changes a choice that exists and adds one that does not.
  EXPECT_EQ(compose({r, {"++model=cnn_large", "++data=fmnist"}, {}}).choices,
            (std::map<std::string, std::string>{{"model", "cnn_large"}, {"optim", "adamw"}, {"data", "fmnist"}}));
  // model/mlp.yaml brings its own optim: a second default for the same group is an error.
  EXPECT_EQ(config_error([&] { compose({r, {"model=mlp"}, {}}); }),
            "In '" + r.string() + "': config group 'optim' is already in the defaults list (from '" +
                (t / "recipes/model/mlp.yaml").string() +
                "'). To change a choice made there, write '- override optim: adamw'");
  // null drops a group; ~group=option only when it matches.
  EXPECT_EQ(composed(r, {"model=null", "~optim=adamw"}), "{}\n");
  // The last choice given wins.
  EXPECT_EQ(compose({r, {"model=mlp", "model=cnn_large"}, {}}).choices.at("model"), "cnn_large");
}

TEST_F(ConfigCompose, KeyOverridesApplyAfterCompositionThenInterpolation) {
  auto r = recipe("r.yaml",
                  "defaults:\n  - optim: adamw\n  - _self_\n"
                  "trainer: {lr: '${optim.lr}', name: 'run_${optim.name}_${trainer.seed}', seed: 1, drop: 1}\n");
  Composed c = compose(
      {r, {"optim=sgd", "optim.lr=0.5", "trainer.seed=7", "+trainer.tag=[a, 'b c']", "+optim.momentum=.9", "~trainer.drop"},
       {}});
  EXPECT_EQ(emit(c.config),
            "optim:\n  name: sgd\n  lr: 0.5\n  momentum: .9\n"
            "trainer:\n  lr: 0.5\n  name: run_sgd_7\n  seed: 7\n  tag:\n    - a\n    - b c\n");
  EXPECT_EQ(config_error([&] { compose({r, {"trainer.sed=3"}, {}}); }),
            "Could not override 'trainer.sed': no such key (did you mean 'trainer.seed'?). To add a new key use "
            "+trainer.sed=...");
}

TEST_F(ConfigCompose, TypesSurvive) {
  auto r = recipe("r.yaml", "a: '1'\nb: 1\nc: ${b}\nd: '${a}'\n");
  YAML::Node n = compose({r, {"+e='2'", "+f=2"}, {}}).config;
  EXPECT_EQ(emit(n), "a: \"1\"\nb: 1\nc: 1\nd: \"1\"\ne: \"2\"\nf: 2\n");
  // The composed tree round-trips through text (what rank 0 sends to the others).
  EXPECT_EQ(first_difference(n, parse(emit(n), "rank0")), "");
  EXPECT_EQ(hash(n), hash(parse(emit(n), "rank0")));
}

TEST_F(ConfigCompose, NowIsTheSameEverywhereInOneCall) {
  auto r = recipe("r.yaml", "a: ${now:%Y%m%d%H%M%S}\nb:\n  c: x_${now:%Y%m%d%H%M%S}\n");
  YAML::Node n = compose({r, {}, {}}).config;
  EXPECT_EQ("x_" + n["a"].Scalar(), n["b"]["c"].Scalar());
  EXPECT_EQ(n["a"].Scalar().size(), 14u);
}

TEST_F(ConfigCompose, LookupOrder) {
  // The recipe's own folder shadows the ancestors; the search path comes last.
  t.write("recipes/fmnist/optim/adamw.yaml", "name: local_adamw\n");
  t.write("elsewhere/extra/thing.yaml", "x: 1\n");
  t.write("elsewhere/optim/adamw.yaml", "name: far_adamw\n");
  auto r = recipe("r.yaml", "defaults:\n  - optim: adamw\n  - extra: thing\n");
  Composed c = compose({r, {}, {t / "elsewhere"}});
  EXPECT_EQ(emit(c.config), "optim:\n  name: local_adamw\nextra:\n  x: 1\n");
  // Without a folder named `recipes` above it, only the recipe's folder is searched.
  t.write("loose/model/m.yaml", "w: 1\n");
  auto loose = t.write("loose/sub/r.yaml", "defaults:\n  - model: m\n");
  EXPECT_NE(config_error([&] { compose({loose, {}, {}}); }).find("could not find config group 'model'"),
            std::string::npos);
  EXPECT_EQ(emit(compose({loose, {}, {t / "loose"}}).config), "model:\n  w: 1\n");
}

TEST_F(ConfigCompose, GroupErrors) {
  auto r = recipe("r.yaml", "defaults:\n  - model: cnn_small\n");
  EXPECT_EQ(config_error([&] { compose({r, {"model=cnn_smal"}, {}}); }),
            "In override 'model=cnn_smal': could not find option 'cnn_smal' of config group 'model' (did you mean "
            "'cnn_small'?). Available options: cnn_large, cnn_small, mlp");
  EXPECT_EQ(config_error([&] { compose({r, {"optim=sgd"}, {}}); }),
            "Could not override 'optim' (override 'optim=sgd'): no match in the defaults list. To append to your "
            "defaults list use +optim=sgd");
  EXPECT_EQ(config_error([&] { compose({r, {"+model=cnn_large"}, {}}); }),
            "Could not append to the defaults list: override '+model=cnn_large' adds 'model', which '" + r.string() +
                "' already sets. Use model=cnn_large to change it");
  EXPECT_EQ(config_error([&] { compose({r, {"~optim"}, {}}); }),
            "Could not delete 'optim' from the defaults list (override '~optim'): no such entry");
  EXPECT_EQ(config_error([&] { compose({r, {"~model=cnn_large"}, {}}); }),
            "Could not delete 'model' from the defaults list (override '~model=cnn_large'): its option is "
            "'cnn_small', not 'cnn_large'");
  EXPECT_EQ(config_error([&] { compose({r, {"model=[a]"}, {}}); }),
            "Override 'model=[a]': config group 'model' takes an option name, got a list");
  EXPECT_EQ(config_error([&] { compose({r, {"model=../../etc"}, {}}); }),
            "Override 'model=../../etc': invalid option name '../../etc'");
  EXPECT_EQ(config_error([&] { compose({r, {"model=a,b"}, {}}); }),
            "Override 'model=a,b' is a sweep (comma-separated values): quote it (model='a,...'), make it a list "
            "(model=[...]) or run it with -m");

  auto typo = recipe("typo.yaml", "defaults:\n  - modle: cnn_small\n");
  EXPECT_EQ(config_error([&] { compose({typo, {}, {}}); }),
            "In '" + typo.string() +
                "': could not find config group 'modle' (did you mean 'model'?). Available groups: data, model, "
                "model/act, optim");
  auto opt = recipe("opt.yaml", "defaults:\n  - optional modle: cnn_small\n  - optional model: nope\n");
  EXPECT_EQ(composed(opt), "{}\n");
}

TEST_F(ConfigCompose, DefaultsListErrors) {
  auto err = [&](const std::string& text) {
    auto r = recipe("bad.yaml", text);
    std::string e = config_error([&] { compose({r, {}, {}}); });
    std::string prefix = "In '" + r.string() + "': ";
    return e.compare(0, prefix.size(), prefix) == 0 ? e.substr(prefix.size()) : e;
  };
  EXPECT_EQ(err("defaults: {model: x}\n"), "'defaults' must be a list, got a map");
  EXPECT_EQ(err("defaults:\n  - [a]\n"), "defaults[0]: expected 'group: option', a config name or _self_, got [a]");
  EXPECT_EQ(err("defaults:\n  - {a: 1, b: 2}\n"),
            "defaults[0]: expected 'group: option', a config name or _self_, got {a: 1, b: 2}");
  EXPECT_EQ(err("defaults:\n  - model: {x: 1}\n"), "defaults[0]: the option of 'model' must be a name or null, got a map");
  EXPECT_EQ(err("defaults:\n  - model: ../x\n"), "defaults[0]: invalid option name '../x' for 'model'");
  EXPECT_EQ(err("defaults:\n  - _self_\n  - _self_\n"), "defaults[1]: _self_ appears twice");
  EXPECT_EQ(err("defaults:\n  - model: cnn_small\n  - model: cnn_large\n"),
            "config group 'model' is already in the defaults list (from '" + (t / "recipes/fmnist/bad.yaml").string() +
                "'). To change a choice made there, write '- override model: cnn_large'");
  EXPECT_EQ(err("defaults:\n  - nothere\n"),
            "could not find config 'nothere' (looked for nothere.yaml in the search path)");
}

TEST_F(ConfigCompose, FileErrors) {
  EXPECT_EQ(config_error([&] { compose({t / "recipes/fmnist/missing.yaml", {}, {}}); }),
            "config file not found: '" + (t / "recipes/fmnist/missing.yaml").string() + "'");
  auto bad = t.write("recipes/optim/broken.yaml", "name: [unclosed\n");
  auto r = recipe("r.yaml", "defaults:\n  - optim: broken\n");
  EXPECT_EQ(config_error([&] { compose({r, {}, {}}); }),
            "invalid YAML in '" + bad.string() + "' at line 2, column 1: end of sequence flow not found");
  t.write("recipes/optim/list.yaml", "- 1\n");
  auto r2 = recipe("r2.yaml", "defaults:\n  - optim: list\n");
  EXPECT_EQ(config_error([&] { compose({r2, {}, {}}); }),
            "'" + (t / "recipes/optim/list.yaml").string() + "' must hold a map of keys at the top, not a list");
}

TEST_F(ConfigCompose, DefaultsCycle) {
  auto a = recipe("a.yaml", "defaults:\n  - b\n");
  auto b = recipe("b.yaml", "defaults:\n  - a\n");
  EXPECT_EQ(config_error([&] { compose({a, {}, {}}); }),
            "defaults cycle: " + a.string() + " -> " + b.string() + " -> " + a.string());
}

TEST_F(ConfigCompose, InterpolationErrorsSurface) {
  auto r = recipe("r.yaml", "a: ${b}\nb: ${a}\n");
  EXPECT_EQ(config_error([&] { compose({r, {}, {}}); }), "interpolation cycle: a -> b -> a");
  auto deep = recipe("deep.yaml", "a: 1\n");
  std::string path = "+" + std::string("k");
  for (int i = 0; i < 64; ++i) path += ".k";
  EXPECT_EQ(config_error([&] { compose({deep, {path + "=1"}, {}}); }),
            "composed config is nested deeper than 64 levels");
}

TEST_F(ConfigCompose, ListGroups) {
  recipe("teacher.yaml", "a: 1\n");
  auto groups = list_groups(t / "recipes/fmnist/teacher.yaml");
  EXPECT_EQ(groups, (std::map<std::string, std::vector<std::string>>{
                        {"data", {"fmnist"}},
                        {"model", {"cnn_large", "cnn_small", "mlp"}},
                        {"model/act", {"gelu", "relu"}},
                        {"optim", {"adamw", "sgd"}},
                    }));
  t.write("elsewhere/extra/thing.yaml", "x: 1\n");
  EXPECT_EQ(list_groups(t / "recipes/fmnist/teacher.yaml", {t / "elsewhere"}).at("extra"),
            (std::vector<std::string>{"thing"}));
}

}  // namespace
}  // namespace retort::config

namespace retort::config {
namespace {

// A recipe given as text (a checkpoint's stored config): composed with overrides like a
// file, its path only names it in messages and roots the group search.
TEST_F(ConfigCompose, RecipeTextComposesLikeAFile) {
  ComposeRequest r;
  r.recipe = t.path() / "recipes/fmnist/stored.yaml";  // does not exist
  r.recipe_text = "defaults:\n  - optim: sgd\ntrainer:\n  seed: 3\n";
  r.overrides = {"trainer.seed=4", "optim.lr=0.5"};
  auto c = compose(r);
  EXPECT_EQ(c.config["trainer"]["seed"].as<int>(), 4);
  EXPECT_EQ(c.config["optim"]["name"].as<std::string>(), "sgd");
  EXPECT_EQ(c.config["optim"]["lr"].as<double>(), 0.5);
  EXPECT_EQ(c.recipe_text, r.recipe_text);
  r.recipe_text = "trainer: [unclosed\n";
  auto msg = config_error([&] { compose(r); });
  EXPECT_NE(msg.find("stored.yaml"), std::string::npos) << msg;
}

// A pinned instant: every rank formats ${now:...} alike; Composed::now says which instant.
TEST_F(ConfigCompose, NowCanBePinned) {
  auto file = recipe("now.yaml", "run:\n  dir: out/${now:%Y-%m-%d_%H-%M-%S}\n");
  ComposeRequest r;
  r.recipe = file;
  r.now = 86400 * 365;  // early 1971, local time
  std::tm tm{};
  localtime_r(&r.now, &tm);
  char expected[64];
  std::strftime(expected, sizeof expected, "out/%Y-%m-%d_%H-%M-%S", &tm);
  auto c = compose(r);
  EXPECT_EQ(c.config["run"]["dir"].as<std::string>(), expected);
  EXPECT_NE(std::string(expected).find("197"), std::string::npos) << expected;
  EXPECT_EQ(c.now, r.now);
  r.now = 0;
  auto fresh = compose(r);
  EXPECT_GT(fresh.now, 86400 * 365 * 50);  // the current time
}

}  // namespace
}  // namespace retort::config
