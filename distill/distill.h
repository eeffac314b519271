#pragma once
/// Umbrella header of retort_distill: knowledge distillation from a frozen teacher.
///   distill::Distiller d(teacher, student, options);   // options: the recipe's distill:
///   d->prepare(sample_x);                              // checks layer pairs, adds projections
///   distill::Losses l = d->forward(x, y);              // l.total, l.terms {"ce", "mse.fc0", ...}
#include "distill/distiller.h"
#include "distill/layer_map.h"
#include "distill/losses.h"
#include "distill/options.h"
#include "distill/teacher.h"
#include "distill/teacher_cache.h"
