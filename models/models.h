#pragma once
/// Umbrella header of retort_models: the Model interface, CNN / MLP families, registry.
#include "models/cnn.h"
#include "models/model.h"
#include "models/safetensors.h"
#include "models/transformer.h"
#include "models/weights.h"
