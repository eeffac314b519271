#pragma once
/// What a recipe says about the data, as a plain struct (config/ declares the keys).
///   data::DataOptions opts;  opts.subset = 2000;  opts.validate();
///   auto train = data::load_dataset(opts, "train");
#include <cstdint>
#include <string>

#include "config/config.h"
#include "data/text_windows.h"
#include "data/tokenizer.h"

namespace retort::data {

struct DataOptions {
  std::string name = "fashion-mnist";  ///< "fashion-mnist", "mnist", or "text" (token files)
  /// The IDX files' folder; for text, the folder `retort tokenize` wrote (train.tokens and
  /// val.tokens), or one of nanoGPT's / llm.c's token files for each (train.bin, val.bin).
  std::string root = "/usr/share/datasets/fashion-mnist";
  int64_t batch_size = 128;            ///< global batch, summed over all ranks
  bool augment = false;                ///< random crop + horizontal flip on training batches
  /// mixup on training batches: x = lam x + (1 - lam) x[perm] with lam ~ Beta(mixup, mixup),
  /// the labels mixed the same way (a distillation teacher sees the mixed inputs). 0: off.
  /// Each rank mixes within its own share of the global batch (as DDP with mixup does), so
  /// unlike augmentation the mixed batches depend on the world size.
  double mixup = 0.0;
  int64_t prefetch = 2;                ///< batches prepared ahead; 0 prepares in next()
  int64_t subset = 0;                  ///< keep the first n samples of each split; 0 = all
  /// Global batch for evaluation. Larger is slower on CPU: a CNN activation outgrows the
  /// caches.
  int64_t eval_batch_size = 256;
  // text
  TokenizerOptions tokenizer;          ///< data.tokenizer.*: what made the token files (generate decodes with it)
  WindowSampling windows = WindowSampling::kRandom;  ///< training windows: random offsets or aligned blocks
  int64_t eval_tokens = 0;             ///< validation tokens evaluated (the first, in aligned windows); 0: all

  bool text() const { return name == "text"; }

  /// Throws ConfigError naming the key (`data.<field>`) and the value when out of range.
  void validate() const;
  static void declare(config::Fields<DataOptions>& f);
};

}  // namespace retort::data
