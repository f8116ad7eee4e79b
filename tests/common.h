#pragma once
// Helpers shared by the test suites.
#include <c10/util/Exception.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

namespace blockopt::test {

// An empty scratch directory unique to this test process: <tmp>/blockopt_<name>_<pid>.
inline std::filesystem::path fresh_dir(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() /
             ("blockopt_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// The message of the exception `f` throws (without a c10 backtrace); "" when it throws none.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// The oracle cases shipped with the repository (tests/data).
inline std::filesystem::path testdata_dir() { return BLOCKOPT_TESTDATA_DIR; }

}  // namespace blockopt::test

// A test dependency that scripts/setup installs: a missing one fails the test and names the
// Debian package, so no test is silently skipped on a fresh machine.
#define BLOCKOPT_REQUIRE_INSTALLED(path, package)                                         \
  do {                                                                                    \
    if (!std::filesystem::exists(path)) {                                                 \
      FAIL() << (path) << " is missing: install the Debian package " << (package)         \
             << " (`make test` runs scripts/setup, which installs it)";                    \
    }                                                                                     \
  } while (0)
