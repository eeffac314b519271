#pragma once
// Test helpers shared by tests/launch and tests/mpi.
#include <gtest/gtest.h>

#include <string>

#include "tests/common/expect.h"

using retort::test::expect_error;
