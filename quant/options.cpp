#include "quant/options.h"

namespace retort::quant {

void QuantOptions::declare(config::Fields<QuantOptions>& f) {
  f.add("method", &QuantOptions::method,
        "dynamic (activations ranged per call; linear layers) or static (ranged on calibration batches; "
        "linear and convolution layers)");
  f.add("calibration", &QuantOptions::calibration,
        "static: how an activation's range is chosen: minmax, percentile (quant.percentile) or entropy (KL over "
        "a histogram)");
  f.add("percentile", &QuantOptions::percentile,
        "calibration=percentile: p, the range running from the (100 - p)-th to the p-th percentile of the values")
      .greater_than(0)
      .max(100);
  f.add("batches", &QuantOptions::batches, "static: calibration batches, the first of the training split").min(1);
  f.add("skip", &QuantOptions::skip, "layers left in fp32, by name (e.g. head, transformer.wte)");
}

}  // namespace retort::quant
