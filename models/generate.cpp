#include "models/generate.h"

#include <ATen/CPUGeneratorImpl.h>

#include <limits>

#include "core/error.h"
#include "core/text.h"
#include "models/eval_scope.h"
#include "models/gpt.h"

namespace retort::models {
namespace {

std::string str(int64_t v) { return std::to_string(v); }

Gpt& language_model(Model& model) {
  auto* gpt = dynamic_cast<Gpt*>(&model);
  if (!gpt)
    throw ConfigError("model.name: '" + model.options().name +
                      "' is not a language model; generation needs a gpt model");
  return *gpt;
}

void check_request(const Gpt& gpt, const std::vector<int64_t>& prompt, const GenerateOptions& o) {
  if (o.tokens < 0) throw ConfigError("generate: tokens must be >= 0, got " + str(o.tokens));
  if (!(o.temperature >= 0))
    throw ConfigError("generate: temperature must be >= 0 (0: greedy), got " + format_number(o.temperature));
  if (o.top_k < 0) throw ConfigError("generate: top_k must be >= 0 (0: every token), got " + str(o.top_k));
  if (prompt.empty()) throw ConfigError("generate: the prompt is empty; it needs at least one token");
  const int64_t n = static_cast<int64_t>(prompt.size()), context = gpt.context();
  if (n > context)
    throw ConfigError("model.context: the prompt is " + str(n) + " tokens, longer than the model's context of " +
                      str(context));
  if (n + o.tokens > context)
    throw ConfigError("model.context: the prompt (" + str(n) + " tokens) and " + str(o.tokens) +
                      " new tokens exceed the model's context of " + str(context) + "; ask for at most " +
                      str(context - n) + " tokens");
  for (size_t i = 0; i < prompt.size(); ++i)
    if (prompt[i] < 0 || prompt[i] >= gpt.vocab_size())
      throw DataError("generate: prompt token " + str(static_cast<int64_t>(i)) + " is " + str(prompt[i]) +
                      ", outside the model's vocabulary [0, " + str(gpt.vocab_size()) + ")");
}

// The next token from the last position's logits [V] (fp32, CPU).
int64_t sample(torch::Tensor logits, const GenerateOptions& o, at::Generator& generator) {
  if (o.temperature == 0) return logits.argmax().item<int64_t>();
  logits = logits / o.temperature;
  if (o.top_k > 0 && o.top_k < logits.size(0)) {
    const auto kth = std::get<0>(logits.topk(o.top_k)).min();
    logits = logits.masked_fill(logits < kth, -std::numeric_limits<double>::infinity());
  }
  return torch::multinomial(torch::softmax(logits, 0), 1, false, generator).item<int64_t>();
}

}  // namespace

std::vector<int64_t> generate(Model& model, const std::vector<int64_t>& prompt, const GenerateOptions& options) {
  Gpt& gpt = language_model(model);
  check_request(gpt, prompt, options);
  EvalScope eval(gpt);
  torch::NoGradGuard no_grad;
  // Sampled on the CPU with a generator of its own: the same seed gives the same tokens on
  // any device, whatever else drew from the global generator.
  at::Generator generator = at::detail::createCPUGenerator(options.seed);
  const auto device = gpt.parameters().front().device();
  KvCache cache;
  auto input = torch::tensor(prompt, torch::kLong).unsqueeze(0).to(device);  // [1, n]
  std::vector<int64_t> tokens;
  while (static_cast<int64_t>(tokens.size()) < options.tokens) {
    auto logits = gpt.forward_cached(input, cache)[0][-1].to(torch::kCPU, torch::kFloat);  // [V]
    tokens.push_back(sample(logits, options, generator));
    input = torch::full({1, 1}, tokens.back(), torch::kLong).to(device);
  }
  return tokens;
}

}  // namespace retort::models
