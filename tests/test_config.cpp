#include <blockopt/experiments/config.h>
#include <blockopt/experiments/run.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

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
