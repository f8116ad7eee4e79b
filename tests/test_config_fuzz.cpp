// Deterministic fuzzing of the config front door: the shipped configs, mutated (dropped,
// duplicated, renamed and retyped keys, extreme numbers, long lists, YAML alias bombs, tabs,
// broken syntax, binary bytes, --set overrides), must each end in success or in a
// ConfigError naming a key or a line: never a crash, a hang, another exception type or
// unbounded memory. The same holds for `blockopt run --dry-run` as a subprocess.
#include "common.h"

#include <blockopt/experiments/config.h>
#include <blockopt/experiments/run.h>
#include <blockopt/experiments/run_dir.h>
#include <blockopt/experiments/sweep.h>

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <map>
#include <random>
#include <regex>
#include <set>

namespace ex = blockopt::experiments;
namespace fs = std::filesystem;
using blockopt::test::fresh_dir;

namespace {

const fs::path kConfigs = fs::path(BLOCKOPT_SOURCE_DIR) / "experiments" / "configs";

struct BaseConfig {
  std::string name;
  std::string text;
  bool build;  // build the experiments (Gaussian data: cheap); else YAML and sweep plan only
};

// Shipped configs. Gaussian ones are built, shrunk to 64 samples so a build takes about a
// millisecond; the others (data files, text corpora) are checked up to the sweep plan.
std::vector<BaseConfig> base_configs() {
  std::vector<BaseConfig> bases;
  for (const char* name : {"sweep-gaussian.yaml", "paper/linear-ce-classes.yaml",
                           "paper/mlp1-classes.yaml", "paper/mlp4-relu.yaml",
                           "paper/theorem1-gamma.yaml", "paper/main-figure.yaml"}) {
    auto yaml = ex::load_yaml_file((kConfigs / name).string());
    ex::apply_override(yaml, "data.samples=64");
    YAML::Emitter out;
    out << yaml;
    bases.push_back({name, std::string(out.c_str()) + "\n", true});
  }
  for (const char* name : {"demo.yaml", "compare-gpt.yaml", "compare-fashion-cnn.yaml",
                           "gpt-hessian-evolution.yaml", "gpt_kjv_byte.yaml", "gpt_kjv_sp.yaml",
                           "fashion_mnist_cnn.yaml", "fashion_mnist_mlp.yaml",
                           "paper/fashion-mnist-n128.yaml"}) {
    bases.push_back({name, ex::read_file(kConfigs / name), false});
  }
  return bases;
}

enum class Mutation {
  DropKey, DuplicateKey, RenameKey, Retype, ExtremeNumber, LongList,
  AliasBomb, SelfAlias, Tabs, BrokenSyntax, BinaryBytes, Override, Count
};

const char* mutation_name(Mutation m) {
  static const char* names[] = {"drop-key", "duplicate-key", "rename-key", "retype",
                                "extreme-number", "long-list", "alias-bomb", "self-alias",
                                "tabs", "broken-syntax", "binary-bytes", "override"};
  return names[static_cast<int>(m)];
}

// Numbers at and beyond every limit a reader checks.
const std::vector<std::string> kExtremeNumbers = {
    ".nan", ".NaN", ".inf", "-.inf", "1e308", "-1e308", "1e309", "-1", "0", "1", "0.5",
    "4.9e-324", "2147483648", "4294967296", "9007199254740993", "9223372036854775807",
    "9223372036854775808", "18446744073709551616", "-9223372036854775809", "0x7fffffff",
    "1_000", "+5", "1e3"};

// 10^12 values after expansion from 13 anchors of ten items each.
std::string alias_bomb() {
  std::string text = "&b0 [x, x, x, x, x, x, x, x, x, x]";
  for (int level = 1; level <= 12; ++level) {
    const auto previous = "*b" + std::to_string(level - 1);
    std::string items;
    for (int i = 0; i < 9; ++i) items += ", " + previous;
    text = "&b" + std::to_string(level) + " [" + text + items + "]";
  }
  return text;
}

const std::vector<std::string> kSelfAliases = {"&s [1, *s]", "&m {a: *m}", "*undefined",
                                               "&a [&a x, *a]"};

// A position in the tree: a map entry (key) or a sequence item (index).
struct Slot {
  YAML::Node parent;
  std::string key;
  size_t index = 0;
  std::string path;
};

void collect_slots(const YAML::Node& node, const std::string& path, std::vector<Slot>& slots) {
  if (node.IsMap()) {
    for (const auto& entry : node) {
      const auto key = entry.first.Scalar();
      const auto child = path.empty() ? key : path + "." + key;
      slots.push_back({node, key, 0, child});
      collect_slots(entry.second, child, slots);
    }
  } else if (node.IsSequence()) {
    for (size_t i = 0; i < node.size(); ++i) {
      const auto child = path + "[" + std::to_string(i) + "]";
      slots.push_back({node, "", i, child});
      collect_slots(node[i], child, slots);
    }
  }
}

void set_slot(Slot& slot, const YAML::Node& value) {
  if (slot.key.empty()) {
    slot.parent[slot.index] = value;
  } else {
    slot.parent[slot.key] = value;
  }
}

class Fuzzer {
 public:
  explicit Fuzzer(uint64_t seed) : rng_(seed) {}

  size_t below(size_t n) { return static_cast<size_t>(rng_() % n); }
  template <typename T>
  const T& pick(const std::vector<T>& items) { return items[below(items.size())]; }

  // A scalar, list or mapping of another type than most config values.
  YAML::Node retyped_value() {
    switch (below(7)) {
      case 0: return YAML::Node("abc");
      case 1: return YAML::Node("true");
      case 2: return YAML::Load("[1, 2]");
      case 3: return YAML::Load("{a: 1}");
      case 4: return YAML::Node(YAML::NodeType::Null);
      case 5: return YAML::Node("");
      default: return YAML::Node(pick(kExtremeNumbers));
    }
  }

  // Mutates `base` with `mutation`; fills `overrides` for Mutation::Override.
  std::string mutate(const std::string& base, Mutation mutation, std::vector<std::string>& overrides) {
    switch (mutation) {
      case Mutation::Tabs: return with_tab(base);
      case Mutation::BrokenSyntax: return broken(base);
      case Mutation::BinaryBytes: return with_bytes(base);
      default: break;
    }
    auto tree = YAML::Load(base);
    std::vector<Slot> slots;
    collect_slots(tree, "", slots);
    if (slots.empty()) return base;
    auto slot = pick(slots);
    std::string placeholder;  // replaced by raw YAML text after emitting
    switch (mutation) {
      case Mutation::DropKey:
        if (slot.key.empty()) {
          YAML::Node shorter(YAML::NodeType::Sequence);
          for (size_t i = 0; i < slot.parent.size(); ++i) {
            if (i != slot.index) shorter.push_back(slot.parent[i]);
          }
          slot.parent = shorter;  // NOTE: reassigning a handle to a sequence replaces its content
        } else {
          slot.parent.remove(slot.key);
        }
        break;
      case Mutation::DuplicateKey:
        if (!slot.key.empty()) slot.parent.force_insert(slot.key, retyped_value());
        break;
      case Mutation::RenameKey:
        if (!slot.key.empty()) {
          const auto value = slot.parent[slot.key];
          slot.parent.remove(slot.key);
          const std::vector<std::string> names = {slot.key + "s", "", "1", slot.path,
                                                  slot.key + " ", "<<", "~"};
          slot.parent[pick(names)] = value;
        }
        break;
      case Mutation::Retype: set_slot(slot, retyped_value()); break;
      case Mutation::ExtremeNumber: set_slot(slot, YAML::Node(pick(kExtremeNumbers))); break;
      case Mutation::LongList: {
        // 1000 items: a valid, long list; now and then one beyond kMaxConfigValues.
        YAML::Node list(YAML::NodeType::Sequence);
        const size_t length = below(8) == 0 ? ex::kMaxConfigValues + 1 : 1000;
        const std::string item = pick(std::vector<std::string>{"32", "1", "x", "0.5", "-1"});
        for (size_t i = 0; i < length; ++i) list.push_back(item);
        set_slot(slot, list);
        break;
      }
      case Mutation::AliasBomb: placeholder = alias_bomb(); break;
      case Mutation::SelfAlias: placeholder = pick(kSelfAliases); break;
      case Mutation::Override: overrides.push_back(random_override(slots)); break;
      default: break;
    }
    if (!placeholder.empty()) set_slot(slot, YAML::Node("PLACEHOLDER_VALUE"));
    YAML::Emitter out;
    out << tree;
    std::string text = std::string(out.c_str()) + "\n";
    if (!placeholder.empty()) text.replace(text.find("PLACEHOLDER_VALUE"), 17, placeholder);
    return text;
  }

 private:
  std::string random_override(const std::vector<Slot>& slots) {
    const std::vector<std::string> paths = {pick(slots).path, pick(slots).path, "a..b", ".x",
                                            "x.", "", "name.sub", "sweep.grid.data.dim"};
    std::vector<std::string> values = {pick(kExtremeNumbers), "[", "{a: 1, a: 2}", "abc",
                                       "[1, 2]", alias_bomb(), pick(kSelfAliases), ""};
    const auto& path = pick(paths);
    if (path.find('[') != std::string::npos) return path + "=1";  // not a --set path: an error
    return below(8) == 0 ? path : path + "=" + pick(values);
  }

  std::vector<size_t> line_starts(const std::string& text) {
    std::vector<size_t> starts = {0};
    for (size_t i = 0; i + 1 < text.size(); ++i) {
      if (text[i] == '\n') starts.push_back(i + 1);
    }
    return starts;
  }

  std::string with_tab(std::string text) {
    const auto start = pick(line_starts(text));
    if (text.compare(start, 2, "  ") == 0) {
      text.replace(start, 2, "\t");
    } else {
      text.insert(start + below(text.size() - start), "\t");
    }
    return text;
  }

  std::string broken(std::string text) {
    static const std::string syntax = ":[]{},'\"-&*!|>%@`#";
    switch (below(4)) {
      case 0: {  // drop one syntax character
        std::vector<size_t> positions;
        for (size_t i = 0; i < text.size(); ++i) {
          if (syntax.find(text[i]) != std::string::npos) positions.push_back(i);
        }
        if (!positions.empty()) text.erase(pick(positions), 1);
        return text;
      }
      case 1: text.insert(below(text.size() + 1), 1, syntax[below(syntax.size())]); return text;
      case 2: return text.substr(0, below(text.size() + 1));
      default: {  // a line indented one space more
        const auto start = pick(line_starts(text));
        text.insert(start, " ");
        return text;
      }
    }
  }

  std::string with_bytes(std::string text) {
    const size_t count = 1 + below(8);
    for (size_t i = 0; i < count; ++i) {
      text.insert(below(text.size() + 1), 1, static_cast<char>(below(256)));
    }
    return text;
  }

  std::mt19937_64 rng_;
};

// True when a ConfigError message names a YAML path or a line: "<origin>: <path> (line L):",
// "<origin>: <path>:", "... at line L ..." or a --set assignment.
bool names_key_or_line(const std::string& message) {
  static const std::regex pattern(R"((line [0-9]+)|(--set)|(: [A-Za-z_][A-Za-z0-9_.\[\]-]*(:| \()))");
  return std::regex_search(message, pattern);
}

int64_t peak_rss_bytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;
}

struct Case {
  const BaseConfig* base;
  std::vector<Mutation> mutations;
  std::string text;
  std::vector<std::string> overrides;

  std::string describe() const {
    std::string kinds;
    for (auto m : mutations) kinds += std::string(kinds.empty() ? "" : "+") + mutation_name(m);
    std::string shown = text.size() > 1500 ? text.substr(0, 1500) + "..." : text;
    std::string sets;
    for (const auto& o : overrides) sets += " --set '" + o.substr(0, 200) + "'";
    return base->name + " [" + kinds + "]" + sets + ":\n" + shown;
  }
};

Case make_case(Fuzzer& fuzzer, const std::vector<BaseConfig>& bases, size_t index,
               const std::set<Mutation>& excluded = {}) {
  Case c;
  c.base = &bases[index % bases.size()];
  c.text = c.base->text;
  const size_t count = 1 + fuzzer.below(2);
  for (size_t i = 0; i < count; ++i) {
    Mutation m;
    do {
      m = static_cast<Mutation>(fuzzer.below(static_cast<size_t>(Mutation::Count)));
    } while (excluded.count(m));
    c.mutations.push_back(m);
  }
  // NOTE: the fuzzer walks and emits the tree for most mutations, so those come first, then
  // at most one alias mutation (its tree would explode here too), then the text mutations
  // (after which the text may not parse).
  auto phase = [](Mutation m) {
    if (m == Mutation::AliasBomb || m == Mutation::SelfAlias) return 1;
    if (m == Mutation::Tabs || m == Mutation::BrokenSyntax || m == Mutation::BinaryBytes) return 2;
    return 0;
  };
  std::stable_sort(c.mutations.begin(), c.mutations.end(),
                   [&](Mutation a, Mutation b) { return phase(a) < phase(b); });
  if (c.mutations.size() == 2 && phase(c.mutations[0]) == 1 && phase(c.mutations[1]) == 1) {
    c.mutations.pop_back();
  }
  for (auto m : c.mutations) c.text = fuzzer.mutate(c.text, m, c.overrides);
  return c;
}

// Loads, overrides and builds a case as `blockopt run --dry-run` does; a sweep builds one run
// per optimizer label and lr multiplier (seeds only change the seed).
void check_case(const Case& c, const fs::path& file) {
  ex::write_file_atomic(file, c.text);
  auto config = ex::load_yaml_file(file.string());
  for (const auto& assignment : c.overrides) ex::apply_override(config, assignment);
  if (!ex::is_sweep(config)) {
    if (c.base->build) ex::build_experiment(config, file.string());
    return;
  }
  const auto plan = ex::plan_sweep(config, file.string());
  if (!c.base->build) return;
  std::set<std::pair<std::string, double>> built;
  for (const auto& run : plan.runs) {
    if (built.insert({run.optimizer_label, run.lr_multiplier}).second) {
      ex::build_experiment(run.config, file.string() + " [" + run.id + "]");
    }
  }
}

}  // namespace

TEST(ConfigFuzzTest, MutatedConfigsEndInSuccessOrConfigErrorNamingKeyOrLine) {
  const auto dir = fresh_dir("config_fuzz");
  const auto bases = base_configs();
  Fuzzer fuzzer(20261201);
  // NOTE: 3000 cases take 40 s in Release on a loaded 2-core machine; every mutation kind
  // is drawn about 370 times and every base config 200.
  constexpr size_t kCases = 3000;
  std::map<std::string, int> outcomes;
  std::vector<std::string> failures;
  double slowest = 0.0;
  std::string slowest_case;
  const auto rss_before = peak_rss_bytes();
  const auto start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < kCases; ++i) {
    const auto c = make_case(fuzzer, bases, i);
    const auto case_start = std::chrono::steady_clock::now();
    try {
      check_case(c, dir / "case.yaml");
      ++outcomes["success"];
    } catch (const ex::ConfigError& e) {
      ++outcomes["config error"];
      if (!names_key_or_line(e.what())) {
        failures.push_back("ConfigError naming no key or line: " + std::string(e.what()) +
                           "\n" + c.describe());
      }
    } catch (const std::exception& e) {
      failures.push_back(std::string("not a ConfigError: ") + typeid(e).name() + ": " + e.what() +
                         "\n" + c.describe());
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - case_start).count();
    if (seconds > slowest) {
      slowest = seconds;
      slowest_case = c.describe().substr(0, 300);
    }
  }
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double rss_growth_mib = static_cast<double>(peak_rss_bytes() - rss_before) / (1 << 20);
  std::cout << "config fuzz: " << kCases << " cases in " << total << " s (" << outcomes["success"]
            << " valid, " << outcomes["config error"] << " config errors, " << failures.size()
            << " failures); slowest case " << slowest << " s; peak RSS grew " << rss_growth_mib
            << " MiB\n";
  RecordProperty("cases", static_cast<int>(kCases));
  RecordProperty("seconds", std::to_string(total));
  for (size_t i = 0; i < std::min<size_t>(failures.size(), 10); ++i) ADD_FAILURE() << failures[i];
  for (const auto& failure : failures) std::cout << "  " << failure.substr(0, failure.find('\n')) << "\n";
  EXPECT_TRUE(failures.empty()) << failures.size() << " failing cases";
  // Both sides of the front door are exercised.
  EXPECT_GT(outcomes["success"], 0);
  EXPECT_GT(outcomes["config error"], 0);
  // NOTE: an unbounded alias expansion takes hours and tens of GiB; the legitimate cases need
  // milliseconds and a few MiB (64-sample data sets, models below 10^6 parameters). The bounds
  // sit far from both.
  EXPECT_LT(slowest, 2.0) << slowest_case;
  EXPECT_LT(rss_growth_mib, 512.0);
}

TEST(ConfigFuzzTest, DryRunSubprocessExitsZeroOrConfigErrorNeverASignal) {
  const auto dir = fresh_dir("config_fuzz_cli");
  // The built (Gaussian) configs: the others would load a text corpus or data files per case.
  std::vector<BaseConfig> bases;
  for (const auto& base : base_configs()) {
    if (base.build) bases.push_back(base);
  }
  Fuzzer fuzzer(7);
  // NOTE: each subprocess starts LibTorch (about a second of CPU), so two dozen cases; long
  // lists are left to the in-process test (a 1000-seed sweep builds thousands of runs).
  constexpr size_t kCases = 24;
  int valid = 0;
  const auto start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < kCases; ++i) {
    // The first case of each base config is unmutated: the valid path (exit 0, no directory).
    const auto c = i < bases.size() ? Case{&bases[i], {}, bases[i].text, {}}
                                    : make_case(fuzzer, bases, i, {Mutation::LongList});
    const auto work = dir / std::to_string(i);
    fs::create_directories(work);
    ex::write_file_atomic(work / "case.yaml", c.text);
    std::string command = "cd '" + work.string() + "' && ulimit -v 8388608 && timeout 60 '" +
                          std::string(BLOCKOPT_CLI_PATH) + "' run case.yaml --dry-run";
    for (auto assignment : c.overrides) {
      std::string quoted;
      for (char ch : assignment) quoted += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
      command += " --set '" + quoted + "'";
    }
    command += " > stdout.txt 2> stderr.txt";
    const int status = std::system(command.c_str());
    ASSERT_TRUE(WIFEXITED(status)) << c.describe();
    const int code = WEXITSTATUS(status);
    const auto err = ex::read_file(work / "stderr.txt");
    EXPECT_TRUE(code == 0 || code == 2) << "exit " << code << "\n" << err << "\n" << c.describe();
    if (code == 0) {
      ++valid;
      // Nothing but the case and its output: no run directory.
      std::set<std::string> files;
      for (const auto& entry : fs::directory_iterator(work)) files.insert(entry.path().filename());
      EXPECT_EQ(files, (std::set<std::string>{"case.yaml", "stdout.txt", "stderr.txt"}))
          << c.describe();
    } else if (code == 2) {
      EXPECT_EQ(err.rfind("config error:", 0), 0u) << err << "\n" << c.describe();
      EXPECT_TRUE(names_key_or_line(err)) << err << "\n" << c.describe();
    }
  }
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "config fuzz (blockopt run --dry-run): " << kCases << " cases in " << total
            << " s, " << valid << " valid\n";
  EXPECT_GE(valid, static_cast<int>(bases.size()));
  RecordProperty("cases", static_cast<int>(kCases));
  RecordProperty("seconds", std::to_string(total));
}
