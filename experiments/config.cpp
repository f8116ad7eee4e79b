#include <blockopt/experiments/config.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>

namespace blockopt::experiments {

namespace {

// Deepest nesting a config may have (the shipped ones reach 4).
constexpr size_t kMaxConfigDepth = 64;

// " (line L)" for a value from a file, " (from --set)" for one without a source position.
std::string location(const YAML::Node& node) {
  return node.Mark().line >= 0 ? fmt::format(" (line {})", node.Mark().line + 1) : " (from --set)";
}

}  // namespace

void check_config_tree(const YAML::Node& root, const std::string& origin) {
  struct Pending {
    YAML::Node node;
    std::string path;
    size_t depth;
  };
  // NOTE: an explicit stack, not recursion, and a depth limit: a self-referencing alias is a
  // cycle, and the paths of an unbounded descent would hold quadratic memory.
  std::vector<Pending> pending{{root, "", 0}};
  size_t values = 0;
  while (!pending.empty()) {
    const Pending current = std::move(pending.back());
    pending.pop_back();
    const auto shown = current.path.empty() ? std::string("(top level)") : current.path;
    if (++values > kMaxConfigValues) {
      throw ConfigError(fmt::format(
          "{}: {}{}: the config expands to more than {} values (aliases *name repeat their "
          "anchor's whole content; nested or self-referencing aliases multiply it)",
          origin, shown, location(current.node), kMaxConfigValues));
    }
    if (current.depth > kMaxConfigDepth) {
      throw ConfigError(fmt::format("{}: {}{}: nested more than {} levels deep (a self-referencing "
                                    "alias *name inside its own anchor?)",
                                    origin, shown, location(current.node), kMaxConfigDepth));
    }
    if (current.node.IsSequence()) {
      size_t index = 0;
      for (const auto& item : current.node) {
        pending.push_back({item, fmt::format("{}[{}]", current.path, index++), current.depth + 1});
      }
    } else if (current.node.IsMap()) {
      std::map<std::string, int> first_line;  // key -> line where it first appears
      for (const auto& entry : current.node) {
        if (!entry.first.IsScalar()) {
          throw ConfigError(
              fmt::format("{}: {}{}: a key must be a name, not empty (~), a list or a mapping",
                          origin, shown, location(entry.first)));
        }
        const auto& key = entry.first.Scalar();
        const auto path = current.path.empty() ? key : current.path + "." + key;
        const auto [first, inserted] = first_line.emplace(key, entry.first.Mark().line + 1);
        if (!inserted) {
          throw ConfigError(fmt::format("{}: {}{}: duplicate key (first given at line {})", origin,
                                        path, location(entry.first), first->second));
        }
        pending.push_back({entry.second, path, current.depth + 1});
      }
    }
  }
}

YAML::Node load_yaml_file(const std::string& path) {
  if (!std::filesystem::exists(path)) throw ConfigError("config file not found: " + path);
  YAML::Node node;
  try {
    node = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    throw ConfigError(fmt::format("{}: YAML syntax error at line {}, column {}: {}", path,
                                  e.mark.line + 1, e.mark.column + 1, e.msg));
  }
  if (!node.IsMap()) {
    throw ConfigError(fmt::format("{}: top level (line {}): must be a mapping of keys", path,
                                  std::max(node.Mark().line, 0) + 1));
  }
  check_config_tree(node, path);
  return node;
}

namespace {

// Deep copy without source marks, so errors report the value as coming from --set.
YAML::Node without_marks(const YAML::Node& node) {
  if (node.IsScalar()) return YAML::Node(node.Scalar());
  if (node.IsSequence()) {
    YAML::Node copy(YAML::NodeType::Sequence);
    for (const auto& item : node) copy.push_back(without_marks(item));
    return copy;
  }
  if (node.IsMap()) {
    YAML::Node copy(YAML::NodeType::Map);
    for (const auto& entry : node) copy[entry.first.Scalar()] = without_marks(entry.second);
    return copy;
  }
  return YAML::Node(YAML::NodeType::Null);
}

}  // namespace

void apply_override(YAML::Node& root, const std::string& assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw ConfigError("--set expects key.path=value, got '" + assignment + "'");
  }
  const std::string path = assignment.substr(0, eq);
  YAML::Node parsed;
  try {
    parsed = YAML::Load(assignment.substr(eq + 1));
  } catch (const YAML::Exception& e) {
    throw ConfigError("--set " + path + ": cannot parse value: " + e.msg);
  }
  check_config_tree(parsed, "--set " + path);
  try {
    set_config_value(root, path, without_marks(parsed));
  } catch (const ConfigError& e) {  // name the option: the path may not exist in the file
    throw ConfigError(std::string("--set ") + e.what());
  }
}

void set_config_value(YAML::Node& root, const std::string& path, const YAML::Node& value) {
  // NOTE: yaml-cpp nodes are handles; walk with reset() so assignment does not overwrite.
  YAML::Node node;
  node.reset(root);
  size_t start = 0;
  while (true) {
    const auto dot = path.find('.', start);
    const std::string key = path.substr(start, dot == std::string::npos ? dot : dot - start);
    if (key.empty()) throw ConfigError("empty key in '" + path + "'");
    if (!node.IsMap() && !node.IsNull()) {
      throw ConfigError(path + ": '" + key + "' is under a non-mapping value");
    }
    if (dot == std::string::npos) {
      node[key] = value;
      return;
    }
    if (!node[key] || node[key].IsNull()) node[key] = YAML::Node(YAML::NodeType::Map);
    YAML::Node next = node[key];
    node.reset(next);
    start = dot + 1;
  }
}

ConfigNode ConfigNode::root(YAML::Node source, std::string origin) {
  auto shared = std::make_shared<Shared>();
  shared->origin = std::move(origin);
  shared->source_root = source;
  shared->resolved_root = YAML::Node(YAML::NodeType::Map);
  return ConfigNode(shared, source, shared->resolved_root, "");
}

ConfigNode::ConfigNode(std::shared_ptr<Shared> shared, YAML::Node source, YAML::Node resolved,
                       std::string path)
    : shared_(std::move(shared)), source_(source), resolved_(resolved), path_(std::move(path)) {}

std::string ConfigNode::key_path(const std::string& key) const {
  return path_.empty() ? key : path_ + "." + key;
}

YAML::Node ConfigNode::source_value(const std::string& key) const {
  if (!source_ || !source_.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
  auto value = source_[key];
  if (!value || value.IsNull()) return YAML::Node(YAML::NodeType::Undefined);
  return value;
}

bool ConfigNode::has(const std::string& key) const { return bool(source_value(key)); }

std::string ConfigNode::where(const std::string& key) const {
  if (key.empty()) {  // this mapping itself; one made for an absent key has no position
    return fmt::format("{}: {}{}", shared_->origin, path_,
                       source_.Mark().line >= 0 ? location(source_) : "");
  }
  auto value = source_value(key);
  return fmt::format("{}: {}{}", shared_->origin, key_path(key), value ? location(value) : "");
}

void ConfigNode::fail(const std::string& key, const std::string& message) const {
  throw ConfigError(where(key) + ": " + message);
}

void ConfigNode::check(bool ok, const std::string& key, const std::string& message) const {
  if (!ok) fail(key, message);
}

void ConfigNode::check_finite(double number, const std::string& key) const {
  check(std::isfinite(number), key, fmt::format("expected a finite number, got {}", number));
}

ConfigNode ConfigNode::child(const std::string& key) {
  shared_->requested.insert(key_path(key));
  auto value = source_value(key);
  if (value && !value.IsMap()) fail(key, "expected a mapping of keys");
  if (!resolved_[key] || !resolved_[key].IsMap()) resolved_[key] = YAML::Node(YAML::NodeType::Map);
  return ConfigNode(shared_, value ? value : YAML::Node(YAML::NodeType::Map), resolved_[key],
                    key_path(key));
}

std::vector<ConfigNode> ConfigNode::children(const std::string& key) {
  shared_->requested.insert(key_path(key));
  std::vector<ConfigNode> result;
  auto value = source_value(key);
  resolved_[key] = YAML::Node(YAML::NodeType::Sequence);
  if (!value) return result;
  if (!value.IsSequence()) fail(key, "expected a list");
  for (size_t i = 0; i < value.size(); ++i) {
    const auto item_path = fmt::format("{}[{}]", key_path(key), i);
    shared_->requested.insert(item_path);
    if (!value[i].IsMap()) {
      throw ConfigError(fmt::format("{}: {} (line {}): expected a mapping of keys",
                                    shared_->origin, item_path, value[i].Mark().line + 1));
    }
    YAML::Node resolved_item(YAML::NodeType::Map);
    resolved_[key].push_back(resolved_item);
    result.push_back(ConfigNode(shared_, value[i], resolved_[key][i], item_path));
  }
  return result;
}

void ConfigNode::accept_all_keys() {
  if (!source_.IsMap()) return;
  shared_->requested.insert(key_path("*"));  // check_mapping stops here
}

namespace {

void check_mapping(const YAML::Node& node, const std::string& path,
                   const std::set<std::string>& requested, const std::string& origin) {
  auto join = [&](const std::string& key) { return path.empty() ? key : path + "." + key; };
  if (node.IsSequence()) {
    for (size_t i = 0; i < node.size(); ++i) {
      const auto item = fmt::format("{}[{}]", path, i);
      if (requested.count(item)) check_mapping(node[i], item, requested, origin);
    }
    return;
  }
  if (!node.IsMap() || requested.count(join("*"))) return;
  for (const auto& entry : node) {
    const auto key = entry.first.as<std::string>();
    const auto full = join(key);
    if (!requested.count(full)) {
      std::string known;
      const auto prefix = path.empty() ? std::string() : path + ".";
      for (const auto& r : requested) {
        if (r.rfind(prefix, 0) != 0) continue;
        const auto rest = r.substr(prefix.size());
        if (rest.find_first_of(".[") == std::string::npos) known += (known.empty() ? "" : ", ") + rest;
      }
      throw ConfigError(fmt::format("{}: {} (line {}): unknown key{}", origin, full,
                                    entry.first.Mark().line + 1,
                                    known.empty() ? "" : "; known keys here: " + known));
    }
    check_mapping(entry.second, full, requested, origin);
  }
}

}  // namespace

void ConfigNode::check_no_unknown_keys() const {
  check_mapping(source_, path_, shared_->requested, shared_->origin);
}

std::string ConfigNode::resolved_yaml() const {
  YAML::Emitter out;
  out << resolved_;
  return std::string(out.c_str()) + "\n";
}

}  // namespace blockopt::experiments
