#pragma once
/// Umbrella header of retort_amp: our autocast (thread-local guard, op policy, weight-cast
/// cache), the amp-aware ops models and losses call, dynamic loss scaling and fp32 master
/// weights.
///   #include "amp/amp.h"
///   amp::Autocast guard(true, torch::kBFloat16, torch::kCPU);
///   auto y = amp::linear(x, w, b);
#include "amp/autocast.h"
#include "amp/grad_scaler.h"
#include "amp/master_weights.h"
#include "amp/ops.h"
#include "amp/options.h"
#include "amp/policy.h"
