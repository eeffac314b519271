#pragma once
/// What `retort quantize` reads from the `quant:` section (all keys on its command line).
///   quant:
///     method: dynamic        # dynamic: activations ranged per call; static: from calibration
///     calibration: minmax    # static: minmax | percentile | entropy
///     percentile: 99.99      # percentile: the range from the (100 - p)-th to the p-th percentile
///     batches: 32            # static: calibration batches of the training split
///     skip: [head]           # layers left in fp32, by name
#include <string>
#include <utility>
#include <vector>

#include "config/config.h"
#include "quant/calibration.h"

namespace retort::quant {

enum class Method {
  kDynamic,  ///< weights int8; each layer's input ranged per call, as it comes
             ///< (linear layers)
  kStatic,   ///< weights int8; inputs and outputs ranged once, on calibration
             ///< batches
};

struct QuantOptions {
  Method method = Method::kDynamic;
  Calibration calibration = Calibration::kMinMax;
  double percentile = 99.99;
  int64_t batches = 32;
  std::vector<std::string> skip;
  static void declare(config::Fields<QuantOptions>& f);
};

}  // namespace retort::quant

namespace retort::config {

template <>
struct EnumNames<quant::Method> {
  static std::vector<std::pair<std::string, quant::Method>> list() {
    return {{"dynamic", quant::Method::kDynamic}, {"static", quant::Method::kStatic}};
  }
};

template <>
struct EnumNames<quant::Calibration> {
  static std::vector<std::pair<std::string, quant::Calibration>> list() {
    return {{"minmax", quant::Calibration::kMinMax},
            {"percentile", quant::Calibration::kPercentile},
            {"entropy", quant::Calibration::kEntropy}};
  }
};

}  // namespace retort::config
