#pragma once
// Test helpers shared by tests/launch and tests/mpi.
#include <gtest/gtest.h>

#include <string>

/// Runs `body`, expecting an exception of type E whose message contains every needle.
template <typename E, typename F>
void expect_error(F&& body, std::initializer_list<std::string> needles) {
  try {
    body();
    ADD_FAILURE() << "expected an exception mentioning '" << *needles.begin() << "'";
  } catch (const E& e) {
    const std::string what = e.what();
    for (const auto& needle : needles) EXPECT_NE(what.find(needle), std::string::npos) << "'" << needle << "' not in: " << what;
  }
}
