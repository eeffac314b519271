#pragma once
/// Umbrella header of retort_data: IDX datasets, the distributed sampler, the loaders;
/// for language models the tokenizers, text corpora and token files.
///   auto train = data::load_dataset(opts, "train");
///   data::DistributedSampler sampler(train.size(), opts.batch_size, rank, world, seed);
///   data::Loader loader(train, sampler, data::make_loader_options(opts, device, seed));
#include "data/idx.h"
#include "data/loader.h"
#include "data/options.h"
#include "data/sampler.h"
#include "data/text_corpus.h"
#include "data/text_windows.h"
#include "data/token_file.h"
#include "data/tokenizer.h"
