#pragma once
/// Umbrella header of retort_core: errors with exit codes and durable file helpers.
#include "core/error.h"
#include "core/fs.h"
#include "core/text.h"
