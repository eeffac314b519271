#pragma once
// Exception helpers shared by every test folder (include as "tests/common/expect.h").
#include <gtest/gtest.h>

#include <exception>
#include <initializer_list>
#include <string>

#include "core/error.h"

namespace retort::test {

/// Runs `body`, expecting an exception of type E whose message contains every needle.
template <typename E, typename F>
void expect_error(F&& body, std::initializer_list<std::string> needles) {
  try {
    body();
    ADD_FAILURE() << "no exception thrown (expected one mentioning '" << *needles.begin() << "')";
  } catch (const E& e) {
    const std::string what = e.what();
    for (const auto& needle : needles)
      EXPECT_NE(what.find(needle), std::string::npos) << "'" << needle << "' not in: " << what;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type: " << e.what();
  }
}

/// The message of the exception of type E (default: any retort::Error) that `body`
/// throws; "" when it throws none.
template <typename E = Error, typename F>
std::string error_of(F&& body) {
  try {
    body();
  } catch (const E& e) {
    return e.what();
  }
  return "";
}

}  // namespace retort::test
