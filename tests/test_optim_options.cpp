// The options field lists (optim/options.h): enum errors listing the allowed values, every
// constraint still refused, the archive keys and formats of older checkpoints, every field
// round-tripping through save/load, and docs/optimizers.md holding exactly the generated tables.
#include <blockopt/blockopt.h>
#include <blockopt/experiments/config.h>
#include <blockopt/experiments/optimizer_factory.h>
#include <blockopt/experiments/run_dir.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sstream>

#include "common.h"
#include "optim_cases.h"

namespace {

namespace bo = blockopt::optim;
using blockopt::experiments::ConfigNode;
using blockopt::test::error_of;
using blockopt::test::make_params;
using ::testing::HasSubstr;

// `out` saved to bytes and read back, as a checkpoint file is.
torch::serialize::InputArchive reopen(torch::serialize::OutputArchive& out) {
  std::stringstream stream;
  out.save_to(stream);
  torch::serialize::InputArchive in;
  in.load_from(stream);
  return in;
}

std::string config_error(const std::string& yaml) {
  return error_of(
      [&] { bo::make_optimizer(make_params(), ConfigNode::root(YAML::Load(yaml), "test.yaml")); });
}

TEST(OptimOptions, EnumErrorsListTheAllowedValues) {
  try {
    bo::parse_enum<bo::MuonScale>("foo", "muon.scale");
    FAIL() << "unknown scale accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(),
                 "muon.scale: unknown value \"foo\" (allowed: original, match_rms_adamw, none)");
  }
  EXPECT_EQ(bo::parse_enum<bo::ASGOSide>("auto", "side"), bo::ASGOSide::automatic);
  EXPECT_EQ(bo::parse_enum<bo::NsDtype>("", "ns_dtype"), bo::NsDtype::parameter);
  // From YAML: the key, its line, and the allowed values.
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{name: muon, scale: foo}",
       "scale (line 1): unknown value \"foo\" (allowed: original, "
       "match_rms_adamw, none)"},
      {"{name: muon, ns_eps_mode: foo}", "(allowed: add, clamp)"},
      {"{name: normuon, ns_dtype: float16}", "unknown value \"float16\" (allowed: \"\", bfloat16)"},
      {"{name: normuon, final_scale: foo}", "(allowed: preserve_norm, rms)"},
      {"{name: normuon, reduce: columns}", "(allowed: rows, shorter_axis)"},
      {"{name: muon, update_floor_mode: column}", "(allowed: tensor, row)"},
      {"{name: asgo, root: foo}", "(allowed: polar_express, eigh)"},
      {"{name: asgo, side: foo}", "(allowed: auto, left, right)"},
      {"{name: adam_mini, partition: foo}", "(allowed: gpt, v111, elementwise, custom)"},
  };
  for (const auto& [yaml, expected] : cases)
    EXPECT_THAT(config_error(yaml), HasSubstr(expected)) << yaml;
  // `custom` names a function, which a config cannot pass.
  EXPECT_THAT(config_error("{name: adam_mini, partition: custom}"),
              HasSubstr("unknown partition 'custom'"));
}

// An archived enum that is no name of the enum (a corrupted checkpoint) is refused by name.
TEST(OptimOptions, ArchivedEnumOutsideTheSetIsRefused) {
  torch::serialize::OutputArchive out;
  bo::MuonOptions().serialize(out);
  out.write("scale", c10::IValue(std::string("sideways")));
  auto in = reopen(out);
  bo::MuonOptions loaded;
  try {
    loaded.serialize(in);
    FAIL() << "unknown archived scale accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("Muon.scale: unknown value \"sideways\" (allowed: original"));
  }
}

// One case per constraint of every field list, with the message it gave before the lists.
TEST(OptimOptions, EveryConstraintStillFails) {
  auto named = make_params();
  std::vector<torch::Tensor> params;
  for (const auto& item : named) params.push_back(item.value());
  // Each returns a function constructing the optimizer (which validates its options).
  const auto adamw = [&](bo::AdamWOptions o) { return [=] { bo::AdamW optimizer(params, o); }; };
  const auto mini = [&](bo::AdamMiniOptions o) {
    o.head_dim(4);
    return [=] { bo::AdamMini optimizer(named, o); };
  };
  const auto muon = [&](bo::MuonOptions o) { return [=] { bo::Muon optimizer(named, o); }; };
  const auto normuon = [&](bo::NorMuonOptions o) {
    return [=] { bo::NorMuon optimizer(named, o); };
  };
  const auto asgo = [&](bo::ASGOOptions o) { return [=] { bo::ASGO optimizer(named, o); }; };
  const std::vector<std::pair<std::function<void()>, std::string>> cases = {
      {adamw(bo::AdamWOptions(-1)), "AdamW: learning rate must be finite and >= 0"},
      {adamw(bo::AdamWOptions().lr(NAN)), "AdamW: learning rate must be finite and >= 0"},
      {adamw(bo::AdamWOptions().betas({1.0, 0.9})), "AdamW: beta1 must be in [0, 1)"},
      {adamw(bo::AdamWOptions().betas({0.9, -0.1})), "AdamW: beta2 must be in [0, 1)"},
      {adamw(bo::AdamWOptions().eps(-1)), "AdamW: eps must be finite and >= 0"},
      {adamw(bo::AdamWOptions().weight_decay(INFINITY)),
       "AdamW: weight_decay must be finite and >= 0"},
      {mini(bo::AdamMiniOptions(-1)), "Adam-mini: learning rate must be finite"},
      {mini(bo::AdamMiniOptions().betas({0.9, 1.0})), "Adam-mini: beta2 must be in [0, 1)"},
      {mini(bo::AdamMiniOptions().eps(-1)), "Adam-mini: eps must be finite and >= 0"},
      {mini(bo::AdamMiniOptions().weight_decay(-1)), "Adam-mini: weight_decay must be finite"},
      {[&] { bo::AdamMini optimizer(named, bo::AdamMiniOptions().head_dim(0)); },
       "Adam-mini: head_dim must be >= 1, got 0"},
      {muon(bo::MuonOptions(-1)), "Muon: learning rate must be finite and >= 0"},
      {muon(bo::MuonOptions().momentum(1.0)), "Muon: momentum must be in [0, 1)"},
      {muon(bo::MuonOptions().weight_decay(-1)), "Muon: weight_decay must be finite and >= 0"},
      {muon(bo::MuonOptions().ns_steps(-1)), "Muon: ns_steps must be >= 0"},
      {muon(bo::MuonOptions().fallback_lr(-1)), "Muon fallback: learning rate must be finite"},
      {muon(bo::MuonOptions().fallback_betas({-0.1, 0.9})),
       "Muon: fallback beta1 must be in [0, 1)"},
      {muon(bo::MuonOptions().fallback_betas({0.9, 1.5})),
       "Muon: fallback beta2 must be in [0, 1)"},
      {muon(bo::MuonOptions().fallback_eps(-1)), "Muon: fallback_eps must be finite and >= 0"},
      {muon(bo::MuonOptions().fallback_weight_decay(-1)),
       "Muon: fallback_weight_decay must be finite"},
      {normuon(bo::NorMuonOptions(-1)), "NorMuon: learning rate must be finite and >= 0"},
      {normuon(bo::NorMuonOptions().momentum(-0.5)), "NorMuon: momentum must be in [0, 1)"},
      {normuon(bo::NorMuonOptions().beta2(1.0)), "NorMuon: beta2 must be in [0, 1)"},
      {normuon(bo::NorMuonOptions().ns_steps(-2)), "NorMuon: ns_steps must be >= 0"},
      {normuon(bo::NorMuonOptions().weight_decay(-1)), "NorMuon: weight_decay must be finite"},
      {normuon(bo::NorMuonOptions().fallback_lr(NAN)), "NorMuon fallback: learning rate must be"},
      {normuon(bo::NorMuonOptions().fallback_eps(-1)), "NorMuon: fallback_eps must be finite"},
      {asgo(bo::ASGOOptions(-1)), "ASGO: learning rate must be finite and >= 0"},
      {asgo(bo::ASGOOptions().momentum(1.0)), "ASGO: momentum must be in [0, 1)"},
      {asgo(bo::ASGOOptions().beta2(-0.5)), "ASGO: beta2 must be in [0, 1)"},
      {asgo(bo::ASGOOptions().eps(-1)), "ASGO: eps must be finite and >= 0"},
      {asgo(bo::ASGOOptions().weight_decay(-1)), "ASGO: weight_decay must be finite and >= 0"},
      {asgo(bo::ASGOOptions().damping(-1)), "ASGO: damping must be finite and >= 0"},
      {asgo(bo::ASGOOptions().rms_target(-1)), "ASGO: rms_target must be finite and >= 0"},
      {asgo(bo::ASGOOptions().root_steps(0)), "ASGO: root_steps must be >= 1"},
      {asgo(bo::ASGOOptions().fallback_lr(-1)), "ASGO fallback: learning rate must be finite"},
      {asgo(bo::ASGOOptions().fallback_betas({0.9, 1.0})),
       "ASGO: fallback beta2 must be in [0, 1)"},
      {asgo(bo::ASGOOptions().fallback_weight_decay(-1)), "ASGO: fallback_weight_decay must be"},
  };
  for (const auto& [make, expected] : cases) {
    EXPECT_THROW(make(), std::invalid_argument) << expected;
    EXPECT_THAT(error_of(make), HasSubstr(expected));
  }
  // The defaults pass.
  EXPECT_EQ(error_of(adamw({})), "");
  EXPECT_EQ(error_of(mini({})), "");
  EXPECT_EQ(error_of(muon({})), "");
  EXPECT_EQ(error_of(normuon({})), "");
  EXPECT_EQ(error_of(asgo({})), "");
}

// `check(Options())` for every blockopt Options type.
template <typename Check>
void for_each_options(Check check) {
  check(bo::AdamWOptions());
  check(bo::AdamMiniOptions());
  check(bo::MuonOptions());
  check(bo::NorMuonOptions());
  check(bo::AuroraOptions());
  check(bo::ASGOOptions());
}

// Every field with a constraint, found through the field list, rejects a value outside it:
// a field added to a list with a rule cannot be left unchecked.
template <typename Options>
void expect_every_rule_enforced(const Options& defaults) {
  const std::string optimizer = Options::kName;
  int constrained = 0;
  Options::visit_fields(defaults, [&](const bo::Field& field, const auto& default_value) {
    using T = std::decay_t<decltype(default_value)>;
    std::vector<T> invalid;
    const auto kind = field.rule.kind;
    if constexpr (std::is_same_v<T, double>) {
      if (kind == bo::Rule::Kind::lr || kind == bo::Rule::Kind::non_negative) invalid = {-1.0, NAN};
      if (kind == bo::Rule::Kind::unit_interval) invalid = {-0.1, 1.0};
      if (kind == bo::Rule::Kind::positive) invalid = {0.0, -1.0, NAN};
    } else if constexpr (std::is_same_v<T, bo::betas_t>) {
      if (kind == bo::Rule::Kind::unit_interval) invalid = {{1.0, 0.5}, {0.5, 1.0}};
    } else if constexpr (std::is_same_v<T, int64_t>) {
      if (kind == bo::Rule::Kind::at_least) invalid = {field.rule.minimum - 1};
    }
    EXPECT_TRUE(kind == bo::Rule::Kind::any || !invalid.empty()) << optimizer << "." << field.name;
    if (!invalid.empty()) ++constrained;
    for (const auto& value : invalid) {
      Options options;
      Options::visit_fields(options, [&](const bo::Field& other, auto& slot) {
        if constexpr (std::is_same_v<std::decay_t<decltype(slot)>, T>) {
          if (std::string(other.name) == field.name) slot = value;
        }
      });
      EXPECT_THROW(options.validate(), std::invalid_argument) << optimizer << "." << field.name;
    }
  });
  EXPECT_GT(constrained, 3) << optimizer;
}

TEST(OptimOptions, EveryRuleOfEveryFieldListIsEnforced) {
  for_each_options([](const auto& defaults) { expect_every_rule_enforced(defaults); });
}

// A value unlike `value` of the same type (enums: the next name, cyclically).
template <typename T>
T changed(const T& value) {
  if constexpr (std::is_enum_v<T>) {
    const auto& names = bo::EnumNames<T>::values;
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i].first == value) return names[(i + 1) % names.size()].first;
    }
    return value;
  } else if constexpr (std::is_same_v<T, bool>) {
    return !value;
  } else if constexpr (std::is_same_v<T, bo::betas_t>) {
    return {std::get<0>(value) / 3, std::get<1>(value) / 7};
  } else {
    return value * 3 + 1;
  }
}

template <typename Options>
std::vector<c10::IValue> field_values(const Options& options) {
  std::vector<c10::IValue> values;
  Options::visit_fields(options, [&](const bo::Field&, const auto& value) {
    values.push_back(bo::detail::to_ivalue(value));
  });
  return values;
}

// Every field set away from its default survives serialize -> bytes -> serialize, and enum
// fields are archived as the strings of older checkpoints.
template <typename Options>
void expect_round_trip(Options options) {
  const std::string optimizer = Options::kName;
  Options::visit_fields(options, [](const bo::Field&, auto& value) { value = changed(value); });
  const auto defaults = field_values(Options());
  const auto set = field_values(options);
  for (size_t i = 0; i < set.size(); ++i) {
    EXPECT_FALSE(set[i] == defaults[i]) << optimizer << " field " << i;
  }

  torch::serialize::OutputArchive out;
  options.serialize(out);
  auto in = reopen(out);
  Options loaded;
  loaded.serialize(in);
  const auto round_tripped = field_values(loaded);
  ASSERT_EQ(round_tripped.size(), set.size());
  for (size_t i = 0; i < set.size(); ++i) {
    EXPECT_TRUE(round_tripped[i] == set[i])
        << optimizer << " field " << i << ": " << round_tripped[i] << " != " << set[i];
  }
  Options::visit_fields(options, [&](const bo::Field& field, const auto& value) {
    if constexpr (std::is_enum_v<std::decay_t<decltype(value)>>) {
      c10::IValue archived;
      ASSERT_TRUE(in.try_read(field.name, archived)) << field.name;
      ASSERT_TRUE(archived.isString()) << field.name;
      EXPECT_EQ(archived.toStringRef(), bo::enum_name(value)) << field.name;
    }
  });
}

TEST(OptimOptions, EveryFieldRoundTripsThroughSaveAndLoad) {
  for_each_options([](const auto& defaults) { expect_round_trip(defaults); });
}

// The archive keys and value kinds of the checkpoints written before the field lists (the
// hand-written serialize functions), so those checkpoints load unchanged.
template <typename Options>
void expect_archive_keys(const std::vector<std::pair<std::string, std::string>>& keys) {
  const Options defaults;
  torch::serialize::OutputArchive out;
  defaults.serialize(out);
  auto in = reopen(out);
  std::vector<std::string> names;
  Options::visit_fields(defaults,
                        [&](const bo::Field& field, const auto&) { names.push_back(field.name); });
  EXPECT_EQ(names.size(), keys.size());
  for (const auto& [key, kind] : keys) {
    c10::IValue value;
    ASSERT_TRUE(in.try_read(key, value)) << key;
    EXPECT_EQ(value.tagKind(), kind) << key;
  }
}

TEST(OptimOptions, ArchiveKeysAndKindsAreThoseOfOlderCheckpoints) {
  const std::vector<std::pair<std::string, std::string>> fallback = {
      {"use_fallback", "Bool"},   {"fallback_lr", "Double"},           {"fallback_betas", "Tuple"},
      {"fallback_eps", "Double"}, {"fallback_weight_decay", "Double"}, {"float32_state", "Bool"}};
  auto with_fallback = [&](std::vector<std::pair<std::string, std::string>> keys) {
    keys.insert(keys.end(), fallback.begin(), fallback.end());
    return keys;
  };
  expect_archive_keys<bo::AdamWOptions>({{"lr", "Double"},
                                         {"betas", "Tuple"},
                                         {"eps", "Double"},
                                         {"weight_decay", "Double"},
                                         {"float32_state", "Bool"}});
  expect_archive_keys<bo::AdamMiniOptions>({{"lr", "Double"},
                                            {"betas", "Tuple"},
                                            {"eps", "Double"},
                                            {"weight_decay", "Double"},
                                            {"head_dim", "Int"},
                                            {"partition", "String"},
                                            {"float32_state", "Bool"}});
  expect_archive_keys<bo::MuonOptions>(with_fallback({{"lr", "Double"},
                                                      {"momentum", "Double"},
                                                      {"nesterov", "Bool"},
                                                      {"weight_decay", "Double"},
                                                      {"ns_steps", "Int"},
                                                      {"ns_eps_mode", "String"},
                                                      {"scale", "String"},
                                                      {"ns_dtype", "String"},
                                                      {"ns_coefficients", "String"},
                                                      // added later (optional in an archive)
                                                      {"update_floor", "Double"},
                                                      {"update_floor_mode", "String"},
                                                      {"hyperball", "Bool"}}));
  expect_archive_keys<bo::NorMuonOptions>(with_fallback({{"lr", "Double"},
                                                         {"momentum", "Double"},
                                                         {"nesterov", "Bool"},
                                                         {"weight_decay", "Double"},
                                                         {"ns_steps", "Int"},
                                                         {"ns_eps_mode", "String"},
                                                         {"ns_dtype", "String"},
                                                         {"ns_coefficients", "String"},
                                                         {"beta2", "Double"},
                                                         {"final_scale", "String"},
                                                         // added later (optional in an archive)
                                                         {"reduce", "String"},
                                                         {"update_floor", "Double"},
                                                         {"update_floor_mode", "String"},
                                                         {"hyperball", "Bool"}}));
  expect_archive_keys<bo::ASGOOptions>(with_fallback({{"lr", "Double"},
                                                      {"momentum", "Double"},
                                                      {"beta2", "Double"},
                                                      {"eps", "Double"},
                                                      {"weight_decay", "Double"},
                                                      {"root", "String"},
                                                      {"root_steps", "Int"},
                                                      {"damping", "Double"},
                                                      {"side", "String"},
                                                      {"rms_target", "Double"}}));
}

// A checkpoint from before float32_state existed loads, keeping the default; any other missing
// option is an error.
TEST(OptimOptions, OnlyFieldsAddedLaterMayBeMissingFromAnArchive) {
  for (const std::string missing : {"float32_state", "scale"}) {
    torch::serialize::OutputArchive out;
    const auto options = bo::MuonOptions().float32_state(false);
    bo::MuonOptions::visit_fields(options, [&](const bo::Field& field, const auto& value) {
      if (field.name != missing) out.write(field.name, bo::detail::to_ivalue(value));
    });
    auto in = reopen(out);
    bo::MuonOptions loaded;
    if (missing == "float32_state") {
      loaded.serialize(in);
      EXPECT_TRUE(loaded.float32_state());
    } else {
      EXPECT_THROW(loaded.serialize(in), c10::Error);
    }
  }
}

// docs/optimizers.md holds exactly the generated option tables (`blockopt options` prints
// them): every generated table, and no other options table.
TEST(OptimOptions, DocsHoldTheGeneratedTables) {
  const auto docs = blockopt::experiments::read_file(std::filesystem::path(BLOCKOPT_SOURCE_DIR) /
                                                     "docs" / "optimizers.md");
  const std::string header = "| option | meaning | default |";
  size_t tables = 0;
  for (auto at = docs.find(header); at != std::string::npos; at = docs.find(header, at + 1))
    ++tables;
  EXPECT_EQ(tables, bo::documented_optimizers().size());
  for (const auto& name : bo::documented_optimizers()) {
    EXPECT_THAT(docs, HasSubstr(bo::options_markdown(name)))
        << "regenerate with: blockopt options " << name;
  }
}

}  // namespace
