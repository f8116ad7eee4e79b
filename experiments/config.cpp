#include <blockopt/experiments/config.h>

#include <filesystem>

namespace blockopt::experiments {

YAML::Node load_yaml_file(const std::string& path) {
  if (!std::filesystem::exists(path)) throw ConfigError("config file not found: " + path);
  try {
    auto node = YAML::LoadFile(path);
    if (!node.IsMap()) throw ConfigError(path + ": top level must be a mapping of keys");
    return node;
  } catch (const YAML::Exception& e) {
    throw ConfigError(fmt::format("{}: YAML syntax error at line {}, column {}: {}", path,
                                  e.mark.line + 1, e.mark.column + 1, e.msg));
  }
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
  YAML::Node value;
  try {
    value = without_marks(YAML::Load(assignment.substr(eq + 1)));
  } catch (const YAML::Exception& e) {
    throw ConfigError("--set " + path + ": cannot parse value: " + e.msg);
  }
  set_config_value(root, path, value);
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
  auto value = source_value(key);
  std::string location;
  if (value && value.Mark().line >= 0) {
    location = fmt::format(" (line {})", value.Mark().line + 1);
  } else if (value) {
    location = " (from --set)";
  }
  return fmt::format("{}: {}{}", shared_->origin, key.empty() ? path_ : key_path(key), location);
}

void ConfigNode::fail(const std::string& key, const std::string& message) const {
  throw ConfigError(where(key) + ": " + message);
}

void ConfigNode::check(bool ok, const std::string& key, const std::string& message) const {
  if (!ok) fail(key, message);
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
