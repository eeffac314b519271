// `retort tokenize <text file or folder> <out_dir>` and
// `retort generate <run_dir | checkpoint> --prompt TEXT [--tokens N] [--temperature T] [--top-k K] [--seed S]`.
#include <CLI/CLI.hpp>

#include <iostream>

#include "amp/autocast.h"
#include "cli/commands.h"
#include "cli/run_config.h"
#include "core/error.h"
#include "data/data.h"
#include "launch/world.h"
#include "models/generate.h"
#include "trainer/checkpoint_model.h"

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

}  // namespace

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
