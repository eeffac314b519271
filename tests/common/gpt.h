#pragma once
// The gpt the tests build (include as "tests/common/gpt.h").
#include <cstdint>

#include "models/model.h"

namespace retort::test {

/// A gpt over `vocab` ids and `context` positions: `depth` layers of width `dim`, `heads`
/// heads, MLP width `mlp_dim` (0: 4 * dim).
inline models::ModelOptions gpt_options(int64_t vocab = 61, int64_t context = 16, int64_t dim = 24, int64_t depth = 2,
                                        int64_t heads = 3, int64_t mlp_dim = 40) {
  models::ModelOptions o;
  o.name = "gpt";
  o.vocab_size = vocab;
  o.context = context;
  o.dim = dim;
  o.depth = depth;
  o.heads = heads;
  o.mlp_dim = mlp_dim;
  return o;
}

}  // namespace retort::test
