// Typed access: Fields declarations, Reader validation (all problems together), describe,
// suggest.
#include <gtest/gtest.h>

#include "config/config.h"
#include "helpers.h"

namespace retort::config {
namespace {

using testing::config_error;

struct TrainerOptions {
  int64_t max_epochs = 10;
  double lr = 1e-3;
  bool amp = false;
  std::string precision = "fp32";
  int workers = 2;
  uint64_t seed = 0;
  float clip = 1.0f;
  std::vector<int64_t> milestones{30, 60};
  std::vector<double> betas{0.9, 0.999};
  std::vector<std::string> tags;
  std::optional<int64_t> max_steps;
  std::optional<std::string> resume;
  std::string checkpoint_dir = "ckpt";
  YAML::Node extra;

  static void declare(Fields<TrainerOptions>& f) {
    f.add("max_epochs", &TrainerOptions::max_epochs, "epochs to train").min(1);
    f.add("lr", &TrainerOptions::lr, "learning rate").greater_than(0).less_than(1);
    f.add("amp", &TrainerOptions::amp, "mixed precision");
    f.add("precision", &TrainerOptions::precision, "compute precision").one_of({"fp32", "bf16", "fp16"});
    f.add("workers", &TrainerOptions::workers, "loader threads").min(0).max(64);
    f.add("seed", &TrainerOptions::seed, "random seed");
    f.add("clip", &TrainerOptions::clip, "gradient clipping norm").min(0);
    f.add("milestones", &TrainerOptions::milestones, "LR decay epochs").min(1);
    f.add("betas", &TrainerOptions::betas, "Adam betas").min(0).less_than(1);
    f.add("tags", &TrainerOptions::tags, "free tags").one_of({"a", "b", "c"});
    f.add("max_steps", &TrainerOptions::max_steps, "stop after this many steps").min(1);
    f.add("resume", &TrainerOptions::resume, "checkpoint to resume from").optional_key();
    f.add("checkpoint.dir", &TrainerOptions::checkpoint_dir, "where checkpoints go");
    f.add("extra", &TrainerOptions::extra, "anything");
  }
};

struct OptimOptions {
  std::string name = "adamw";
  double weight_decay = 0.01;
  static void declare(Fields<OptimOptions>& f) {
    f.add("name", &OptimOptions::name, "optimizer").one_of({"adamw", "sgd"});
    f.add("weight_decay", &OptimOptions::weight_decay, "decoupled weight decay").min(0);
  }
};

struct Required {
  std::string path;
  static void declare(Fields<Required>& f) { f.add("path", &Required::path, "dataset root").required(); }
};

YAML::Node yaml(const std::string& text) { return parse(text, "t"); }

// An enum member, an accessor-bound field (TORCH_ARG style) and nested sections.
enum class Mode { kOff, kFast, kSafe };

struct Knobs {
  double gain_ = 2.0;  // reached through gain(), as TORCH_ARG's accessors
  double& gain() { return gain_; }
  int64_t taps = 3;
  static void declare(Fields<Knobs>& f) {
    f.add<double>("gain", [](Knobs& k) -> double& { return k.gain(); }, "gain").greater_than(0);
    f.add("taps", &Knobs::taps, "taps").min(1);
  }
};

struct Device {
  Mode mode = Mode::kFast;
  Knobs knobs;  // under knobs.*
  Knobs flat;   // beside mode
  static void declare(Fields<Device>& f) {
    f.add("mode", &Device::mode, "how");
    f.add_section("knobs", &Device::knobs);
    f.add_section("", &Device::flat);
  }
};

}  // namespace

template <>
struct EnumNames<Mode> {
  static std::vector<std::pair<std::string, Mode>> list() {
    return {{"off", Mode::kOff}, {"fast", Mode::kFast}, {"safe", Mode::kSafe}, {"careful", Mode::kSafe}};
  }
};

namespace {

TEST(ConfigReader, ReadsEveryType) {
  Reader r(yaml(
      "trainer:\n"
      "  max_epochs: 5\n  lr: 3e-4\n  amp: true\n  precision: bf16\n  workers: 0\n  seed: 0x10\n  clip: 2\n"
      "  milestones: [2, 4]\n  betas: [0.8, 1e-1]\n  tags: [a, c]\n  max_steps: 100\n  resume: null\n"
      "  checkpoint: {dir: /tmp/x}\n  extra: {any: [thing, 1]}\n"));
  auto t = r.section<TrainerOptions>("trainer");
  r.finish();
  EXPECT_EQ(t.max_epochs, 5);
  EXPECT_DOUBLE_EQ(t.lr, 3e-4);
  EXPECT_TRUE(t.amp);
  EXPECT_EQ(t.precision, "bf16");
  EXPECT_EQ(t.workers, 0);
  EXPECT_EQ(t.seed, 16u);
  EXPECT_FLOAT_EQ(t.clip, 2.0f);  // an int is accepted for a float
  EXPECT_EQ(t.milestones, (std::vector<int64_t>{2, 4}));
  EXPECT_EQ(t.betas, (std::vector<double>{0.8, 0.1}));
  EXPECT_EQ(t.tags, (std::vector<std::string>{"a", "c"}));
  EXPECT_EQ(t.max_steps, 100);
  EXPECT_FALSE(t.resume.has_value());
  EXPECT_EQ(t.checkpoint_dir, "/tmp/x");
  EXPECT_EQ(emit(t.extra), "any:\n  - thing\n  - 1\n");
}

TEST(ConfigReader, MissingKeysAndSectionsKeepDefaults) {
  Reader r(yaml("trainer:\n  max_epochs: 3\n"));
  auto t = r.section<TrainerOptions>("trainer");
  auto o = r.section<OptimOptions>("optim");  // absent section
  r.finish();
  EXPECT_EQ(t.max_epochs, 3);
  EXPECT_DOUBLE_EQ(t.lr, 1e-3);
  EXPECT_EQ(t.milestones, (std::vector<int64_t>{30, 60}));
  EXPECT_FALSE(t.max_steps.has_value());
  EXPECT_EQ(o.name, "adamw");
  Reader empty(yaml("optim:\n"));  // a null section is an empty one
  EXPECT_EQ(empty.section<OptimOptions>("optim").name, "adamw");
  empty.finish();
}

TEST(ConfigReader, RootSectionAndDottedKeys) {
  Reader r(yaml("name: sgd\nweight_decay: 0\n"));
  auto o = r.section<OptimOptions>("");
  r.finish();
  EXPECT_EQ(o.name, "sgd");
  EXPECT_DOUBLE_EQ(o.weight_decay, 0.0);
  Reader nested(yaml("a:\n  b:\n    name: sgd\n"));
  EXPECT_EQ(nested.section<OptimOptions>("a.b").name, "sgd");
  nested.finish();
}

TEST(ConfigReaderErrors, TypeErrorsAreExact) {
  auto err = [](const std::string& key_value) {
    return config_error([&] {
      Reader r(yaml("trainer:\n  " + key_value + "\n"));
      r.section<TrainerOptions>("trainer");
      r.finish();
    });
  };
  EXPECT_EQ(err("max_epochs: abc"),
            "invalid configuration: trainer.max_epochs: expected int, got 'abc' (string)");
  EXPECT_EQ(err("max_epochs: 1.5"),
            "invalid configuration: trainer.max_epochs: expected int, got '1.5' (float)");
  EXPECT_EQ(err("max_epochs: 1e3"),
            "invalid configuration: trainer.max_epochs: expected int, got '1e3' (float)");
  EXPECT_EQ(err("max_epochs: '5'"),
            "invalid configuration: trainer.max_epochs: expected int, got '5' (string)");
  EXPECT_EQ(err("max_epochs: null"), "invalid configuration: trainer.max_epochs: expected int, got null");
  EXPECT_EQ(err("max_epochs: [1]"), "invalid configuration: trainer.max_epochs: expected int, got a list");
  EXPECT_EQ(err("max_epochs: 99999999999999999999"),
            "invalid configuration: trainer.max_epochs: expected int, got '99999999999999999999' (int, "
            "out of range)");
  EXPECT_EQ(err("workers: 3000000000"),
            "invalid configuration: trainer.workers: expected int, got '3000000000' (int, out of "
            "32-bit range)");
  EXPECT_EQ(err("seed: -1"), "invalid configuration: trainer.seed: expected int >= 0, got '-1' (int)");
  EXPECT_EQ(err("lr: fast"), "invalid configuration: trainer.lr: expected float, got 'fast' (string)");
  EXPECT_EQ(err("lr: 1e999"),
            "invalid configuration: trainer.lr: expected float, got '1e999' (float, out of range)");
  EXPECT_EQ(err("clip: 1e300"),
            "invalid configuration: trainer.clip: expected float, got '1e300' (float, out of 32-bit "
            "float range)");
  EXPECT_EQ(err("amp: yes"), "invalid configuration: trainer.amp: expected bool, got 'yes' (string)");
  EXPECT_EQ(err("amp: 1"), "invalid configuration: trainer.amp: expected bool, got '1' (int)");
  EXPECT_EQ(err("precision: {a: 1}"),
            "invalid configuration: trainer.precision: expected string, got a map");
  EXPECT_EQ(err("milestones: 5"),
            "invalid configuration: trainer.milestones: expected list[int], got '5' (int)");
  EXPECT_EQ(err("milestones: [1, x]"),
            "invalid configuration: trainer.milestones: element [1]: expected int, got 'x' (string)");
  EXPECT_EQ(err("max_steps: x"),
            "invalid configuration: trainer.max_steps: expected int, got 'x' (string)");
  EXPECT_EQ(err("checkpoint: 5"), "invalid configuration: trainer.checkpoint: expected a map, got '5' (int)");
}

TEST(ConfigReaderErrors, ConstraintErrorsAreExact) {
  auto err = [](const std::string& key_value) {
    return config_error([&] {
      Reader r(yaml("trainer:\n  " + key_value + "\n"));
      r.section<TrainerOptions>("trainer");
      r.finish();
    });
  };
  EXPECT_EQ(err("max_epochs: 0"), "invalid configuration: trainer.max_epochs: must be >= 1, got 0");
  EXPECT_EQ(err("lr: 0"), "invalid configuration: trainer.lr: must be > 0, got 0");
  EXPECT_EQ(err("lr: 1.0"), "invalid configuration: trainer.lr: must be < 1, got 1.0");
  EXPECT_EQ(err("lr: .nan"), "invalid configuration: trainer.lr: must be > 0, got .nan");
  EXPECT_EQ(err("workers: 65"), "invalid configuration: trainer.workers: must be <= 64, got 65");
  EXPECT_EQ(err("precision: fp61"),
            "invalid configuration: trainer.precision: must be one of: fp32, bf16, fp16; got 'fp61' "
            "(did you mean 'fp16'?)");
  EXPECT_EQ(err("milestones: [3, 0]"),
            "invalid configuration: trainer.milestones: element [1] must be >= 1, got 0");
  EXPECT_EQ(err("tags: [a, z]"),
            "invalid configuration: trainer.tags: element [1] must be one of: a, b, c; got 'z'");
  EXPECT_EQ(err("max_steps: 0"), "invalid configuration: trainer.max_steps: must be >= 1, got 0");
}

TEST(ConfigReaderErrors, EverythingReportedTogetherSortedByPath) {
  std::string msg = config_error([] {
    Reader r(yaml(
        "trainer:\n  max_epochs: abc\n  max_epoch: 3\n  lr: -1\n  precision: fp8\n"
        "optim:\n  name: adam\n  max_epochs: 4\n"
        "modle: {}\n"));
    r.section<TrainerOptions>("trainer");
    r.section<OptimOptions>("optim");
    r.finish();
  });
  EXPECT_EQ(msg,
            "invalid configuration (7 problems):\n"
            "  modle: unknown key\n"
            "  optim.max_epochs: unknown key (did you mean 'trainer.max_epochs'?)\n"
            "  optim.name: must be one of: adamw, sgd; got 'adam' (did you mean 'adamw'?)\n"
            "  trainer.lr: must be > 0, got -1\n"
            "  trainer.max_epoch: unknown key (did you mean 'trainer.max_epochs'?)\n"
            "  trainer.max_epochs: expected int, got 'abc' (string)\n"
            "  trainer.precision: must be one of: fp32, bf16, fp16; got 'fp8'");
}

TEST(ConfigReaderErrors, UnknownKeysAndAllowExtra) {
  auto run = [](const std::string& text, bool allow) {
    Reader r(yaml(text));
    r.section<OptimOptions>("optim");
    if (allow) r.allow_extra("notes");
    r.finish();
  };
  EXPECT_EQ(config_error([&] { run("optim: {name: sgd}\nnotes: {a: 1}\noptm: {}\n", true); }),
            "invalid configuration: optm: unknown key (did you mean 'optim'?)");
  EXPECT_NO_THROW(run("optim: {name: sgd}\nnotes: {a: 1, b: [2]}\n", true));
  EXPECT_EQ(config_error([&] { run("optim: {name: sgd}\nnotes: 1\n", false); }),
            "invalid configuration: notes: unknown key");
  // Below a free-form YAML::Node field anything goes; next to it, not.
  EXPECT_EQ(config_error([] {
              Reader r(yaml("trainer: {extra: {x: {y: 1}}, chekpoint: {dir: a}}\n"));
              r.section<TrainerOptions>("trainer");
              r.finish();
            }),
            "invalid configuration: trainer.chekpoint: unknown key (did you mean 'trainer.checkpoint'?)");
  // A section that is not a map.
  EXPECT_EQ(config_error([] {
              Reader r(yaml("optim: 3\n"));
              r.section<OptimOptions>("optim");
              r.finish();
            }),
            "invalid configuration: optim: expected a map (section), got '3' (int)");
}

TEST(ConfigReaderErrors, RequiredKeys) {
  EXPECT_EQ(config_error([] {
              Reader r(yaml("data: {}\n"));
              r.section<Required>("data");
              r.finish();
            }),
            "invalid configuration: data.path: missing required key (string: dataset root)");
  Reader ok(yaml("data: {path: /d}\n"));
  EXPECT_EQ(ok.section<Required>("data").path, "/d");
  ok.finish();
}

TEST(ConfigReaderErrors, ConstraintOnWrongTypeIsAProgrammingError) {
  struct Bad {
    std::string s;
    static void declare(Fields<Bad>& f) { f.add("s", &Bad::s, "text").min(1); }
  };
  Reader r(yaml("{}"));
  try {
    r.section<Bad>("x");
    FAIL() << "no error";
  } catch (const ConfigError&) {
    FAIL() << "a declaration bug is not a config error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "config: min() on field 's' of type string (bounds need an int or float field)");
  }
}

TEST(ConfigDescribe, KeyInfoForHelp) {
  auto keys = describe<TrainerOptions>("trainer");
  ASSERT_EQ(keys.size(), 14u);
  auto find = [&](const std::string& path) {
    for (const auto& k : keys)
      if (k.path == path) return k;
    ADD_FAILURE() << "no " << path;
    return KeyInfo{};
  };
  KeyInfo e = find("trainer.max_epochs");
  EXPECT_EQ(e.type, "int");
  EXPECT_EQ(e.default_value, "10");
  EXPECT_EQ(e.constraint, ">= 1");
  EXPECT_EQ(e.help, "epochs to train");
  EXPECT_EQ(find("trainer.lr").default_value, "0.001");
  EXPECT_EQ(find("trainer.lr").constraint, "> 0 and < 1");
  EXPECT_EQ(find("trainer.clip").default_value, "1.0");
  EXPECT_EQ(find("trainer.amp").default_value, "false");
  EXPECT_EQ(find("trainer.precision").constraint, "one of: fp32, bf16, fp16");
  EXPECT_EQ(find("trainer.workers").constraint, ">= 0 and <= 64");
  EXPECT_EQ(find("trainer.milestones").type, "list[int]");
  EXPECT_EQ(find("trainer.milestones").default_value, "[30, 60]");
  EXPECT_EQ(find("trainer.betas").default_value, "[0.9, 0.999]");
  EXPECT_EQ(find("trainer.tags").default_value, "[]");
  EXPECT_EQ(find("trainer.max_steps").type, "optional[int]");
  EXPECT_EQ(find("trainer.max_steps").default_value, "null");
  EXPECT_EQ(find("trainer.checkpoint.dir").default_value, "ckpt");
  EXPECT_EQ(find("trainer.extra").type, "any");
  EXPECT_EQ(find("trainer.extra").default_value, "null");

  Reader r(yaml("trainer: {}\n"));
  r.section<TrainerOptions>("trainer");
  r.section<OptimOptions>("optim");
  ASSERT_EQ(r.declared().size(), 16u);
  EXPECT_EQ(r.declared()[0].path, "trainer.max_epochs");
  EXPECT_EQ(r.declared()[15].path, "optim.weight_decay");
}

TEST(ConfigReader, EnumsAccessorsAndNestedSections) {
  Reader r(yaml("dev: {mode: careful, knobs: {gain: 0.5, taps: 7}, gain: 4.0}\n"));
  const auto d = r.section<Device>("dev");
  r.finish();
  EXPECT_EQ(d.mode, Mode::kSafe);  // an alias
  EXPECT_EQ(d.knobs.gain_, 0.5);
  EXPECT_EQ(d.knobs.taps, 7);
  EXPECT_EQ(d.flat.gain_, 4.0);
  EXPECT_EQ(d.flat.taps, 3);

  auto keys = describe<Device>("dev");
  ASSERT_EQ(keys.size(), 5u);
  EXPECT_EQ(keys[0].path, "dev.mode");
  EXPECT_EQ(keys[0].type, "string");
  EXPECT_EQ(keys[0].default_value, "fast");
  EXPECT_EQ(keys[0].constraint, "one of: off, fast, safe, careful");
  EXPECT_EQ(keys[1].path, "dev.knobs.gain");
  EXPECT_EQ(keys[1].default_value, "2.0");
  EXPECT_EQ(keys[1].constraint, "> 0");
  EXPECT_EQ(keys[3].path, "dev.gain");
  EXPECT_EQ(enum_name(Mode::kSafe), "safe");  // the first name
  EXPECT_EQ(enum_value<Mode>("off", "dev.mode"), Mode::kOff);
  const std::string wrong = config_error([] { enum_value<Mode>("slow", "dev.mode"); });
  for (const char* part : {"dev.mode", "off, fast, safe, careful", "'slow'"})
    EXPECT_NE(wrong.find(part), std::string::npos) << wrong;
}

TEST(ConfigReaderErrors, EnumAndNestedProblemsNameTheirKeys) {
  Reader r(yaml("dev: {mode: sfe, knobs: {gain: -1}}\n"));
  r.section<Device>("dev");
  const std::string msg = config_error([&] { r.finish(); });
  for (const char* part : {"dev.mode", "sfe", "did you mean 'safe'", "dev.knobs.gain"})
    EXPECT_NE(msg.find(part), std::string::npos) << part << " not in: " << msg;
}

TEST(ConfigSuggest, WholePathThenLeaf) {
  std::vector<std::string> c = {"trainer.max_epochs", "trainer.lr", "optim.name", "optim"};
  EXPECT_EQ(suggest("trainer.max_epoch", c), "trainer.max_epochs");
  EXPECT_EQ(suggest("optim.max_epochs", c), "trainer.max_epochs");
  EXPECT_EQ(suggest("optm", c), "optim");
  EXPECT_EQ(suggest("completely.different", c), "");
  EXPECT_EQ(suggest("x", {}), "");
}

}  // namespace
}  // namespace retort::config
