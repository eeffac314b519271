#pragma once
/// Umbrella header of retort_models: the Model interface, the cnn / mlp / vit / gpt families,
/// the registry, generation, GPT-2's config.json, safetensors, ONNX export.
#include "models/cnn.h"
#include "models/generate.h"
#include "models/gpt.h"
#include "models/hf_gpt2.h"
#include "models/int8.h"
#include "models/model.h"
#include "models/onnx_export.h"
#include "models/safetensors.h"
#include "models/transformer.h"
#include "models/weights.h"
