// `retort tokenize <text file or folder> <out_dir>`,
// `retort generate <run_dir | checkpoint> --prompt TEXT [--tokens N] [--temperature T] [--top-k K] [--seed S]` and
// `retort cache-teacher <recipe.yaml> [overrides ...]`.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <iostream>

#include "amp/autocast.h"
#include "cli/commands.h"
#include "cli/run_config.h"
#include "core/error.h"
#include "data/data.h"
#include "launch/world.h"
#include "distill/teacher_cache.h"
#include "models/generate.h"
#include "trainer/checkpoint_model.h"
#include "trainer/distill_task.h"
#include "trainer/trainer.h"

namespace retort::cli {

namespace {

struct TokenizeArgs {
  std::string corpus, out;
  data::TokenizerOptions tokenizer;
  double validation = 0.1;
};

int tokenize(launch::World& world, const TokenizeArgs& a) {
  if (world.rank() != 0) return kExitOk;
  const auto tokenizer = data::make_tokenizer(a.tokenizer);
  const auto made = data::tokenize_corpus(*tokenizer, a.corpus, a.out, a.validation);
  std::cout << "tokenize (" << tokenizer->name() << ", " << tokenizer->vocab_size() << " ids): "
            << made.train_tokens << " training tokens (" << made.train_bytes << " bytes) -> "
            << made.train_path.string() << "\n"
            << "  " << made.validation_tokens << " validation tokens (" << made.validation_bytes << " bytes) -> "
            << made.validation_path.string() << "\n"
            << "train with data.name=text data.root=" << a.out << " data.tokenizer.name=" << tokenizer->name() << "\n";
  return kExitOk;
}

struct GenerateArgs {
  std::string run;
  std::string prompt;
  models::GenerateOptions options;
};

int generate(launch::World& world, const GenerateArgs& a) {
  if (world.rank() != 0) return kExitOk;
  const auto loaded = trainer::load_checkpoint_model(a.run);
  const RunConfig rc = checkpoint_run_config(loaded.checkpoint, {});
  if (!rc.data.text())
    throw ConfigError(a.run + " is not a language model (model.name " + rc.model.name +
                      ", data.name " + rc.data.name + "): generate needs a gpt trained on text");
  const auto tokenizer = data::make_tokenizer(rc.data.tokenizer);
  const auto ids = tokenizer->encode(a.prompt);
  const std::vector<int64_t> prompt(ids.begin(), ids.end());
  amp::Autocast autocast(rc.amp, torch::kCPU);
  const auto next = models::generate(*loaded.model, prompt, a.options);
  std::cout << a.prompt << tokenizer->decode(std::vector<int32_t>(next.begin(), next.end())) << std::endl;
  return kExitOk;
}

/// A distillation recipe's teacher, run once over the training blocks; its outputs go to
/// distill.cache.dir for runs of the same recipe to train from (distill/teacher_cache.h).
int cache_teacher(launch::World& world, const Args& positionals) {
  if (world.size() > 1)
    throw UsageError("cache-teacher: run it as one process (it reads every block once); then train on any ranks");
  const auto split = split_positionals(positionals, "cache-teacher", "recipe", 1, 1);
  const auto composed = config::compose({split.inputs.front(), split.overrides, {}, run_config_schema_yaml()});
  const RunConfig rc = read_run_config(composed.config);
  rc.data.validate();
  rc.distill.validate();
  if (rc.distill.cache_dir.empty())
    throw ConfigError("distill.cache.dir: where to write the teacher cache; set distill.cache.dir=<dir>");
  if (!rc.model.language_model() || !rc.data.text())
    throw ConfigError("model.name: a teacher cache is for language models on text (model.name gpt, data.name text), got "
                      "model.name " + rc.model.name + ", data.name " + rc.data.name);
  const auto train_set = data::load_dataset(rc.data, "train", window_shape(rc));
  const auto spec = distill::cache_spec(rc.distill, trainer::teacher_cache_key(rc.distill, *train_set.text, rc.model));
  auto teacher = trainer::load_teacher(rc.distill, rc.data);
  distill::Distiller(teacher, models::make_model(rc.model), rc.distill);  // the same checks as training's
  trainer::set_threads(rc.trainer.threads);
  amp::Autocast autocast(rc.amp, torch::kCPU);  // the teacher's outputs in the precision training would see
  const auto start = std::chrono::steady_clock::now();
  int64_t reported = 0;
  distill::write_teacher_cache(*teacher, *train_set.text, spec, rc.distill.cache_dir, 16, [&](int64_t done, int64_t total) {
    if (done * 10 / total == reported && done != total) return;
    reported = done * 10 / total;
    std::printf("cache-teacher: %lld / %lld blocks\n", static_cast<long long>(done), static_cast<long long>(total));
    std::fflush(stdout);
  });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const distill::TeacherCache cache(rc.distill.cache_dir);
  std::cout << "wrote the teacher cache " << rc.distill.cache_dir << ": " << cache.blocks() << " blocks of "
            << spec.key.context << " tokens, top " << cache.spec().top_k << " of " << spec.key.vocab_size << " ids in "
            << distill::cache_dtype_name(spec.dtype) << ", in "
            << static_cast<int64_t>(seconds) << " s\n"
            << "train from it with the same recipe and distill.cache.dir=" << rc.distill.cache_dir << "\n";
  return kExitOk;
}

}  // namespace

CommandRun define_cache_teacher(CLI::App& app) {
  auto positionals = std::make_shared<Args>();
  app.add_option("args", *positionals,
                 "a distillation recipe of a language model, then overrides (distill.cache.dir=..., "
                 "distill.cache.top_k=..., distill.cache.dtype=...)");
  return [positionals](launch::World& world) { return cache_teacher(world, *positionals); };
}

CommandRun define_tokenize(CLI::App& app) {
  auto a = std::make_shared<TokenizeArgs>();
  app.add_option("corpus", a->corpus, "a UTF-8 text file, or a folder of them (read in name order)")->required();
  app.add_option("out", a->out, "the folder to write train.tokens and val.tokens into")->required();
  app.add_option("--tokenizer", a->tokenizer.name, "bytes (256 ids) or gpt2 (GPT-2's byte-level BPE)")
      ->check(CLI::IsMember({"bytes", "gpt2"}))
      ->capture_default_str();
  app.add_option("--bpe-dir", a->tokenizer.dir, "gpt2: the folder of GPT-2's encoder.json and vocab.bpe");
  app.add_option("--validation", a->validation, "the fraction of the bytes (the last ones) kept for validation")
      ->check(CLI::Range(0.0, 0.9))
      ->capture_default_str();
  return [a](launch::World& world) { return tokenize(world, *a); };
}

CommandRun define_generate(CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  app.add_option("run", a->run, "a language model's run directory (its newest checkpoint) or checkpoint")->required();
  app.add_option("--prompt", a->prompt, "the text to continue")->required();
  add_integer_flag(app, "--tokens", a->options.tokens, 1, "new tokens to sample");
  app.add_option("--temperature", a->options.temperature, "logits / temperature before sampling; 0: greedy")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  add_integer_flag(app, "--top-k", a->options.top_k, 0, "sample among the k likeliest tokens; 0: all");
  app.add_option("--seed", a->options.seed, "the sampler's seed: the same seed, the same text")->capture_default_str();
  return [a](launch::World& world) { return generate(world, *a); };
}

}  // namespace retort::cli
