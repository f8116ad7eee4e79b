#pragma once
// YAML run configuration with strict checking. Every value is read through a ConfigNode,
// which records what was used (the default when the key is absent) into the resolved config;
// keys nobody read are reported as unknown, naming the YAML path and line.
#include <blockopt/experiments/detail/config.h>

#include <yaml-cpp/yaml.h>

#include <fmt/format.h>

#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace blockopt::experiments {

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Loads a YAML file; a missing file, a syntax error or a tree check_config_tree rejects is a
// ConfigError naming the file.
YAML::Node load_yaml_file(const std::string& path);

// Most values a config may expand to: aliases (*name) share their anchor's node, but a reader
// walking the tree expands them, so ten nested aliases of ten items each are 10^10 values.
constexpr size_t kMaxConfigValues = 100000;

// Rejects what no reader can walk safely, naming the key and line: more than kMaxConfigValues
// values after alias expansion, nesting deeper than 64 (a self-referencing alias is a cycle),
// duplicate keys (the second would be silently ignored) and keys that are not names.
void check_config_tree(const YAML::Node& root, const std::string& origin);

// Sets root[a][b][c] = value for path "a.b.c", creating mappings on the way.
void set_config_value(YAML::Node& root, const std::string& path, const YAML::Node& value);

// Applies `a.b.c=value` (value parsed as YAML, so numbers, lists and maps work).
void apply_override(YAML::Node& root, const std::string& assignment);

class ConfigNode {
 public:
  // Root of a configuration; `origin` names the file in error messages.
  static ConfigNode root(YAML::Node source, std::string origin);

  const std::string& path() const { return path_; }
  bool has(const std::string& key) const;

  // Optional key: returns the default (and records it) when absent.
  template <typename T>
  T get(const std::string& key, const T& default_value);
  // Required key.
  template <typename T>
  T get(const std::string& key);

  // Sub-mapping (empty when absent).
  ConfigNode child(const std::string& key);
  // Sequence of mappings (empty when absent).
  std::vector<ConfigNode> children(const std::string& key);

  // Throws ConfigError "<origin>: <path.key> (line L): <message>" unless ok.
  void check(bool ok, const std::string& key, const std::string& message) const;
  [[noreturn]] void fail(const std::string& key, const std::string& message) const;

  // Marks every key of this mapping as known: they are checked by another reader.
  void accept_all_keys();

  // After all reads: any key present in the source but never read is an error.
  void check_no_unknown_keys() const;

  // The configuration as used, defaults included.
  std::string resolved_yaml() const;
  YAML::Node resolved() const { return resolved_; }

 private:
  struct Shared {
    std::string origin;
    YAML::Node source_root;
    YAML::Node resolved_root;
    std::set<std::string> requested;  // every path asked for, present or not
  };
  ConfigNode(std::shared_ptr<Shared> shared, YAML::Node source, YAML::Node resolved,
             std::string path);
  std::string key_path(const std::string& key) const;
  std::string where(const std::string& key) const;
  YAML::Node source_value(const std::string& key) const;
  template <typename T>
  T convert(const YAML::Node& value, const std::string& key) const;
  // NOTE: .nan and .inf are valid YAML numbers, but no config value means them.
  void check_finite(double number, const std::string& key) const;
  template <typename T>
  void record(const std::string& key, const T& value);

  std::shared_ptr<Shared> shared_;
  YAML::Node source_;
  YAML::Node resolved_;
  std::string path_;
};

// ---- template implementation ----

template <typename T>
T ConfigNode::convert(const YAML::Node& value, const std::string& key) const {
  try {
    if constexpr (std::is_same_v<T, std::string>) {
      if (!value.IsScalar()) throw YAML::BadConversion(value.Mark());
    }
    if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
      // yaml-cpp would accept 1e3 or 2.0 for an integer only partly; be strict.
      const auto& text = value.Scalar();
      if (text.find_first_of(".eE") != std::string::npos) throw YAML::BadConversion(value.Mark());
    }
    T result = value.as<T>();
    if constexpr (std::is_floating_point_v<T>) check_finite(result, key);
    if constexpr (detail::IsNumberList<T>::value) {
      for (const auto number : result) check_finite(number, key);
    }
    return result;
  } catch (const YAML::Exception&) {
    std::string shown = value.IsScalar() ? "'" + value.Scalar() + "'" : "a non-scalar value";
    fail(key, fmt::format("expected {}, got {}", detail::ConfigTypeName<T>::name(), shown));
  }
}

template <typename T>
void ConfigNode::record(const std::string& key, const T& value) {
  if constexpr (std::is_floating_point_v<T>) {
    resolved_[key] = fmt::format("{}", value);  // shortest round-trip form
  } else {
    resolved_[key] = value;
  }
}

template <typename T>
T ConfigNode::get(const std::string& key, const T& default_value) {
  shared_->requested.insert(key_path(key));
  auto value = source_value(key);
  T result = value ? convert<T>(value, key) : default_value;
  record(key, result);
  return result;
}

template <typename T>
T ConfigNode::get(const std::string& key) {
  shared_->requested.insert(key_path(key));
  auto value = source_value(key);
  if (!value) fail(key, "required key is missing");
  T result = convert<T>(value, key);
  record(key, result);
  return result;
}

}  // namespace blockopt::experiments
