#include <blockopt/experiments/runtime.h>

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  spdlog::set_level(spdlog::level::warn);
  blockopt::experiments::configure_runtime();
  return RUN_ALL_TESTS();
}
