#pragma once
/// The model a checkpoint holds: the one place that reads a checkpoint's `model:` section,
/// builds that model and loads the checkpoint's weights into it. eval, export, prune,
/// report and distill.teacher.checkpoint all go through here.
///   auto loaded = trainer::load_checkpoint_model("outputs/fmnist-teacher/2026-01-01/10-00-00");
///   loaded.model->forward(x);      // eval mode, the checkpoint's weights
///   loaded.checkpoint.step;        // and everything else the checkpoint holds
#include <filesystem>
#include <memory>

#include "models/model.h"
#include "trainer/checkpoint.h"

namespace retort::trainer {

/// A checkpoint and the model built from it.
struct CheckpointModel {
  Checkpoint checkpoint;
  std::shared_ptr<models::Model> model;  ///< in eval mode
};

/// The options of the model `ckpt` was trained with: the `model:` section of its
/// config.yaml. CheckpointError naming that file when it has no such section; ConfigError
/// naming the file and the key (model.<name>) of an unknown or ill-typed entry.
models::ModelOptions checkpoint_model_options(const Checkpoint& ckpt);

/// That model, holding the checkpoint's weights, in eval mode. ConfigError naming
/// config.yaml for options no model can be built from; CheckpointError naming
/// model.safetensors and every missing, unexpected or mis-shaped tensor.
std::shared_ptr<models::Model> checkpoint_model(const Checkpoint& ckpt);

/// Reads and verifies the checkpoint of a run or checkpoint directory (its newest for a
/// run), then builds its model as checkpoint_model does. CheckpointError naming the
/// directory or file otherwise.
CheckpointModel load_checkpoint_model(const fs::path& run_or_checkpoint);

}  // namespace retort::trainer
