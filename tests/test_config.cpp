#include <blockopt/experiments/config.h>
#include <blockopt/experiments/run.h>
#include <blockopt/experiments/sweep.h>

#include "common.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <fstream>

namespace ex = blockopt::experiments;
using ::testing::HasSubstr;

namespace {

const char* kValidConfig = R"(name: cfg-test
seed: 3
data: {type: gaussian, samples: 64, dim: 5, classes: 4}
model: {type: mlp, hidden: [6]}
optimizer: {name: adamw, lr: 0.01}
train: {steps: 4}
)";

// Message of the ConfigError thrown by building `yaml`.
std::string config_error(const std::string& yaml) {
  try {
    ex::build_experiment(YAML::Load(yaml), "test.yaml");
  } catch (const ex::ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no ConfigError for:\n" << yaml;
  return {};
}

}  // namespace

TEST(ConfigTest, ValidConfigBuildsAndResolvesDefaults) {
  auto e = ex::build_experiment(YAML::Load(kValidConfig), "test.yaml");
  EXPECT_EQ(e.name, "cfg-test");
  EXPECT_EQ(e.seed, 3u);
  EXPECT_EQ(e.trainer.steps, 4);
  auto resolved = YAML::Load(e.resolved_yaml);
  // Defaults come from the C++ option structs and are written out.
  EXPECT_EQ(resolved["optimizer"]["weight_decay"].as<double>(), 0.01);
  EXPECT_EQ(resolved["optimizer"]["betas"][1].as<double>(), 0.999);
  EXPECT_EQ(resolved["model"]["activation"].as<std::string>(), "relu");
  EXPECT_EQ(resolved["train"]["grad_accum"].as<int>(), 1);
  EXPECT_EQ(resolved["schedule"]["type"].as<std::string>(), "constant");
  // The resolved config is itself a valid config that resolves to the same text.
  EXPECT_EQ(ex::build_experiment(resolved, "resolved").resolved_yaml, e.resolved_yaml);
}

TEST(ConfigTest, UnknownKeyNamesPathAndLine) {
  const auto message = config_error(std::string(kValidConfig) + "train2: {steps: 3}\n");
  EXPECT_THAT(message, HasSubstr("train2 (line 7)"));
  EXPECT_THAT(message, HasSubstr("unknown key"));
  const auto nested = config_error(R"(name: x
optimizer:
  name: adamw
  lr: 0.1
  betaz: [0.9, 0.9]
)");
  EXPECT_THAT(nested, HasSubstr("optimizer.betaz (line 5)"));
  EXPECT_THAT(nested, HasSubstr("known keys here"));
  EXPECT_THAT(nested, HasSubstr("betas"));
}

TEST(ConfigTest, WrongTypeNamesPathAndLine) {
  const auto message = config_error(R"(name: x
optimizer: {name: adamw}
train:
  steps: many
)");
  EXPECT_THAT(message, HasSubstr("train.steps (line 4)"));
  EXPECT_THAT(message, HasSubstr("expected an integer, got 'many'"));
  EXPECT_THAT(config_error("name: x\noptimizer: {name: adam}\ntrain: {steps: 2.5}\n"), HasSubstr("expected an integer"));
  EXPECT_THAT(config_error("name: x\nmodel: [1, 2]\n"), HasSubstr("model (line 2): expected a mapping"));
  EXPECT_THAT(config_error("name: x\noptimizer: {name: adamw, lr: fast}\n"),
              HasSubstr("optimizer.lr (line 2): expected a number, got 'fast'"));
}

TEST(ConfigTest, OutOfRangeValuesAreErrors) {
  EXPECT_THAT(config_error("name: x\noptimizer: {name: adamw, lr: -1}\n"),
              HasSubstr("learning rate must be finite and >= 0"));
  EXPECT_THAT(config_error("name: x\noptimizer: {name: adamw, betas: [0.9, 1.0]}\n"),
              HasSubstr("beta2 must be in [0, 1)"));
  EXPECT_THAT(config_error("name: x\noptimizer: {name: adam}\ntrain: {steps: 0}\n"),
              HasSubstr("train.steps (line 3): must be > 0"));
  EXPECT_THAT(config_error("name: x\ndata: {samples: 10, batch: 20}\n"), HasSubstr("data.batch"));
  EXPECT_THAT(config_error("name: x\noptimizer: {name: adam}\nschedule: {type: exponential}\n"),
              HasSubstr("unknown schedule 'exponential'"));
  EXPECT_THAT(config_error("seed: 1\n"), HasSubstr("name: required key is missing"));
  EXPECT_THAT(config_error("name: x\n"), HasSubstr("optimizer.name: required key is missing"));
  EXPECT_THAT(config_error("name: x\noptimizer: {name: sgd2}\n"), HasSubstr("unknown optimizer 'sgd2'"));
}

TEST(ConfigTest, MissingFileAndSyntaxError) {
  EXPECT_THROW(
      {
        try {
          ex::load_yaml_file("/nonexistent/run.yaml");
        } catch (const ex::ConfigError& e) {
          EXPECT_THAT(e.what(), HasSubstr("config file not found: /nonexistent/run.yaml"));
          throw;
        }
      },
      ex::ConfigError);
  const auto path = std::filesystem::temp_directory_path() / "blockopt_bad_syntax.yaml";
  std::ofstream(path) << "name: x\ntrain: {steps: 3\n";
  try {
    ex::load_yaml_file(path.string());
    ADD_FAILURE() << "syntax error not reported";
  } catch (const ex::ConfigError& e) {
    EXPECT_THAT(e.what(), HasSubstr("YAML syntax error at line"));
  }
}

TEST(ConfigTest, SetOverridesParseYamlValues) {
  auto yaml = YAML::Load(kValidConfig);
  ex::apply_override(yaml, "optimizer.lr=0.5");
  ex::apply_override(yaml, "model.hidden=[3, 3]");
  ex::apply_override(yaml, "schedule.type=cosine");
  auto e = ex::build_experiment(yaml, "test.yaml");
  EXPECT_DOUBLE_EQ(e.optimizer->param_groups()[0].options().get_lr(), 0.5);
  EXPECT_EQ(e.model->named_parameters().size(), 3u);  // d->3->3->C
  EXPECT_EQ(e.schedule.type, ex::LrSchedule::Type::Cosine);
  EXPECT_THROW(ex::apply_override(yaml, "no-equals-sign"), ex::ConfigError);
  ex::apply_override(yaml, "train.stepz=3");
  try {
    ex::build_experiment(yaml, "test.yaml");
    ADD_FAILURE() << "overridden unknown key not reported";
  } catch (const ex::ConfigError& e) {
    EXPECT_THAT(e.what(), HasSubstr("train.stepz"));
  }
  auto bad_type = YAML::Load(kValidConfig);
  ex::apply_override(bad_type, "train.steps=lots");
  try {
    ex::build_experiment(bad_type, "test.yaml");
    ADD_FAILURE() << "bad --set type not reported";
  } catch (const ex::ConfigError& e) {
    EXPECT_THAT(e.what(), HasSubstr("train.steps (from --set): expected an integer"));
  }
}

namespace {

// Writes `yaml` to a scratch file and returns the message of the ConfigError that loading it
// and planning (a sweep) or building it throws; "" and a test failure when none is thrown.
std::string front_door_error(const std::string& yaml) {
  const auto path = blockopt::test::fresh_dir("front_door") / "run.yaml";
  std::ofstream(path) << yaml;
  try {
    auto config = ex::load_yaml_file(path.string());
    if (ex::is_sweep(config)) {
      ex::check_sweep_runs(ex::plan_sweep(config, path.string()), path.string());
    } else {
      ex::build_experiment(config, path.string());
    }
  } catch (const ex::ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no ConfigError for:\n" << yaml.substr(0, 2000);
  return {};
}

}  // namespace

// Ten nested aliases of ten items expand to 10^10 values: rejected at load, in milliseconds,
// naming where the limit was crossed. (yaml-cpp shares aliased nodes, and its Clone and Dump
// keep them shared, but any reader walking the tree expands them: AliasesInSetValuesAreBounded.)
TEST(ConfigTest, AliasBombIsRejectedAtLoad) {
  std::string bomb = "name: bomb\noptimizer: {name: adam}\nlaughs:\n  - &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int level = 1; level <= 10; ++level) {
    const auto previous = "*a" + std::to_string(level - 1);
    bomb += "  - &a" + std::to_string(level) + " [" + previous;
    for (int i = 1; i < 10; ++i) bomb += ", " + previous;
    bomb += "]\n";
  }
  bomb += "sweep: {grid: {data.classes: *a10}}\n";
  const auto start = std::chrono::steady_clock::now();
  const auto message = front_door_error(bomb);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 1.0);
  EXPECT_THAT(message, HasSubstr("expands to more than 100000 values"));
  EXPECT_THAT(message, ::testing::ContainsRegex(R"(\[[0-9]+\]\[[0-9]+\][^ ]* \(line [0-9]+\))"));
}

// A self-referencing alias is a cycle: a reader walking it recurses until the stack overflows.
TEST(ConfigTest, SelfReferencingAliasIsRejectedAtLoad) {
  EXPECT_THAT(front_door_error("name: x\noptimizer: &o {name: adam, again: *o}\nsweep: {}\n"),
              HasSubstr("nested more than 64 levels deep"));
}

// Each sweep run's config keeps the source lines (YAML::Clone made every error "line 1").
TEST(ConfigTest, SweepRunErrorsNameTheSourceLine) {
  EXPECT_THAT(front_door_error("name: x\noptimizer: {name: adam}\ntrain: {steps: 0}\nsweep: {seeds: [1]}\n"),
              HasSubstr("[adam-lr1x-s1]: train.steps (line 3): must be > 0"));
  EXPECT_THAT(front_door_error("name: x\noptimizer: {name: adam}\nsweep:\n  grid: {train.steps: [2, -1]}\n"),
              HasSubstr("train.steps (line 4): must be > 0"));
  EXPECT_THAT(front_door_error("name: x\nsweep:\n  optimizers:\n    - {name: adam, betas: [0.9]}\n"),
              HasSubstr("optimizer.betas (line 4): expected two values"));
}

// --set values are copied without their marks by a recursive walk: a self-referencing alias
// crashed it (endless recursion) and nested aliases made it copy 10^10 nodes (a hang).
TEST(ConfigTest, AliasesInSetValuesAreBounded) {
  auto yaml = YAML::Load(kValidConfig);
  const auto cycle = blockopt::test::error_of([&] { ex::apply_override(yaml, "a=&s [1, *s]"); });
  EXPECT_THAT(cycle, ::testing::StartsWith("--set a: [1][1]"));
  EXPECT_THAT(cycle, HasSubstr("nested more than 64 levels deep"));
  std::string bomb = "&b0 [x, x, x, x, x, x, x, x, x, x]";
  for (int level = 1; level <= 10; ++level) {
    const auto previous = "*b" + std::to_string(level - 1);
    bomb = "&b" + std::to_string(level) + " [" + bomb;
    for (int i = 1; i < 10; ++i) bomb += ", " + previous;
    bomb += "]";
  }
  EXPECT_THAT(blockopt::test::error_of([&] { ex::apply_override(yaml, "a=" + bomb); }),
              HasSubstr("expands to more than 100000 values"));
}

TEST(ConfigTest, DuplicateKeysAndNonNameKeysAreErrors) {
  EXPECT_THAT(front_door_error("name: x\noptimizer: {name: adam}\ntrain: {steps: 3}\ntrain: {steps: 4}\n"),
              HasSubstr("train (line 4): duplicate key (first given at line 3)"));
  EXPECT_THAT(front_door_error("name: x\noptimizer: {name: adam, lr: 0.1, lr: 0.2}\n"),
              HasSubstr("optimizer.lr (line 2): duplicate key"));
  EXPECT_THAT(front_door_error("name: x\n? [a, b]\n: 1\n"), HasSubstr("(line 2): a key must be a name"));
  EXPECT_THAT(front_door_error("- a\n- b\n"), HasSubstr("top level (line 1): must be a mapping"));
}

TEST(ConfigTest, NonFiniteNumbersAreErrors) {
  EXPECT_THAT(front_door_error("name: x\noptimizer: {name: adam}\ntrain: {grad_clip: .inf}\n"),
              HasSubstr("train.grad_clip (line 3): expected a finite number, got inf"));
  EXPECT_THAT(front_door_error("name: x\noptimizer: {name: adam}\nsweep: {target_loss: .nan}\n"),
              HasSubstr("sweep.target_loss (line 3): expected a finite number"));
  EXPECT_THAT(front_door_error("name: x\noptimizer: {name: adam}\nsweep: {lr_multipliers: [1, .inf]}\n"),
              HasSubstr("sweep.lr_multipliers (line 3): expected a finite number"));
}

// plan_sweep read name, seed, labels and learning rates with yaml-cpp's as<>, which threw
// YAML::BadConversion or BadSubscript instead of a ConfigError naming the key.
TEST(ConfigTest, SweepReadersNameTheKey) {
  EXPECT_THAT(front_door_error("name: {a: 1}\noptimizer: {name: adam}\nsweep: {}\n"),
              HasSubstr("name (line 1): expected a string"));
  EXPECT_THAT(front_door_error("name: x\nseed: -1\noptimizer: {name: adam}\nsweep: {}\n"),
              HasSubstr("seed (line 2): expected an integer, got '-1'"));
  EXPECT_THAT(front_door_error("name: x\nsweep:\n  optimizers:\n    - {name: adam, lr: fast}\n"),
              HasSubstr("sweep.optimizers[0].lr (line 4): expected a number, got 'fast'"));
  EXPECT_THAT(front_door_error("name: x\noptimizer: adam\nsweep: {seeds: [1, 2]}\n"),
              HasSubstr("optimizer (line 2): expected a mapping of keys"));
  EXPECT_THAT(front_door_error("name: x\noptimizer: {name: adam, fallback: {lr: [1]}}\nsweep: {}\n"),
              HasSubstr("optimizer.fallback.lr (line 2): expected a number"));
}

// A null learning rate (lr: ~) means the default, as everywhere else; scaling it for the
// lr multipliers threw YAML::BadConversion (found by the fuzzer with another seed).
TEST(ConfigTest, SweepWithNullLearningRatesUsesTheDefaults) {
  auto config = YAML::Load(std::string(kValidConfig) +
                           "sweep:\n  lr_multipliers: [2]\n  optimizers:\n"
                           "    - {name: muon, lr: ~, fallback: {lr: ~}}\n");
  EXPECT_EQ(blockopt::test::error_of([&] { ex::dry_run(config, "test.yaml"); }), "");
}

// Two runs with one id would share a run directory; a plan of more than 10000 runs is a typo
// (and was expanded in full before any check).
TEST(ConfigTest, SweepRunIdsAreDistinctAndTheirNumberBounded) {
  EXPECT_THAT(front_door_error("name: x\noptimizer: {name: adam}\nsweep: {seeds: [0, 0]}\n"),
              HasSubstr("sweep (line 3): two runs would share the directory runs/adam-lr1x-s0"));
  std::string values = "[0";
  for (int i = 1; i < 200; ++i) values += ", " + std::to_string(i);
  values += "]";
  EXPECT_THAT(front_door_error("name: x\noptimizer: {name: adam}\nsweep: {grid: {a: " + values +
                               ", b: " + values + "}}\n"),
              HasSubstr("sweep.grid (line 3): grid.b makes more than 10000 settings"));
}

// Sizes that would allocate tens of GiB are errors naming the key, not allocation failures.
TEST(ConfigTest, HugeDataAndModelsAreErrors) {
  EXPECT_THAT(front_door_error("name: x\noptimizer: {name: adam}\ndata: {samples: 4294967296, dim: 32}\n"),
              HasSubstr("data.samples (line 3): the data (samples x dim) would have 1.37e+11 elements"));
  EXPECT_THAT(front_door_error("name: x\noptimizer: {name: adam}\ndata: {samples: 8, dim: 4}\n"
                               "model: {hidden: [4294967296]}\n"),
              HasSubstr("model.hidden (line 4): the model would have"));
}

TEST(ConfigTest, DryRunPrintsTheResolvedConfigOrTheSweepRuns) {
  auto single = YAML::Load(kValidConfig);
  EXPECT_EQ(ex::dry_run(single, "test.yaml"), ex::build_experiment(single, "test.yaml").resolved_yaml);
  auto sweep = YAML::Load(std::string(kValidConfig) + "sweep: {seeds: [1, 2], lr_multipliers: [0.5, 1]}\n");
  EXPECT_EQ(ex::dry_run(sweep, "test.yaml"),
            "sweep cfg-test: 4 runs\nadamw-lr0.5x-s1\nadamw-lr0.5x-s2\nadamw-lr1x-s1\nadamw-lr1x-s2\n");
  // Every run is built: an error in one run's config names that run.
  auto bad = YAML::Load(std::string(kValidConfig) + "sweep: {grid: {train.steps: [3, 0]}}\n");
  EXPECT_THAT(blockopt::test::error_of([&] { ex::dry_run(bad, "test.yaml"); }),
              HasSubstr("test.yaml [adamw-steps_0-lr1x-s3]: train.steps"));
}

TEST(ConfigTest, CliDryRunCreatesNoRunDirectory) {
  const auto dir = blockopt::test::fresh_dir("dry_run_cli");
  const auto config = (std::filesystem::path(BLOCKOPT_SOURCE_DIR) / "experiments" / "configs" /
                       "sweep-gaussian.yaml").string();
  const auto command = "cd '" + dir.string() + "' && '" + BLOCKOPT_CLI_PATH + "' run '" + config +
                       "' --dry-run --set 'sweep.seeds=[4]' > out.txt 2> err.txt";
  ASSERT_EQ(std::system(command.c_str()), 0) << ex::read_file(dir / "err.txt");
  const auto out = ex::read_file(dir / "out.txt");
  EXPECT_THAT(out, HasSubstr("sweep sweep-gaussian-mlp: 6 runs\n"));
  EXPECT_THAT(out, HasSubstr("\nadam-small-lr-lr2x-s4\n"));
  EXPECT_FALSE(std::filesystem::exists(dir / "runs"));
  const auto bad = "cd '" + dir.string() + "' && '" + BLOCKOPT_CLI_PATH + "' run '" + config +
                   "' --dry-run --set train.steps=-1 > out.txt 2> err.txt";
  const int status = std::system(bad.c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 2);
  EXPECT_THAT(ex::read_file(dir / "err.txt"), HasSubstr("config error:"));
  EXPECT_THAT(ex::read_file(dir / "err.txt"), HasSubstr("train.steps (from --set): must be > 0"));
  EXPECT_FALSE(std::filesystem::exists(dir / "runs"));
}
