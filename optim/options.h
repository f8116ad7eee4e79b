#pragma once
// Options written once: every Options struct lists its fields in one X-macro,
//   X(type, name, default, rule, doc)
// which declares the TORCH_ARG fields and a visitor over them; validation, archive
// serialization (here), the YAML mapping (experiments/optimizer_factory.cpp) and the docs
// tables all walk that list. Closed sets of values are enums with one name table each.
#include <blockopt/optim/detail/step.h>

#include <torch/torch.h>

#include <array>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

namespace blockopt::optim {

// ---- enums ---------------------------------------------------------------------------------

// Specialised per enum: `static constexpr std::array<std::pair<E, const char*>, N> values`,
// the enum's names as in configs and archives.
template <typename E>
struct EnumNames;

template <typename E>
const char* enum_name(E value) {
  for (const auto& [candidate, name] : EnumNames<E>::values) {
    if (candidate == value) return name;
  }
  throw std::logic_error("enum_name: value missing from its name table");
}

template <typename E>
std::optional<E> find_enum(const std::string& text) {
  for (const auto& [value, name] : EnumNames<E>::values) {
    if (text == name) return value;
  }
  return std::nullopt;
}

// `unknown value "foo" (allowed: original, match_rms_adamw, none)`; an empty name shows as "".
template <typename E>
std::string unknown_enum_message(const std::string& text) {
  std::string allowed;
  for (const auto& entry : EnumNames<E>::values) {
    const std::string name = entry.second;
    allowed += (allowed.empty() ? "" : ", ") + (name.empty() ? std::string("\"\"") : name);
  }
  return "unknown value \"" + text + "\" (allowed: " + allowed + ")";
}

// Throws std::invalid_argument("<what>: unknown value ... (allowed: ...)").
template <typename E>
E parse_enum(const std::string& text, const std::string& what) {
  if (auto value = find_enum<E>(text)) return *value;
  throw std::invalid_argument(what + ": " + unknown_enum_message<E>(text));
}

// ---- field lists ---------------------------------------------------------------------------

// What a field accepts (validate()) and how configs and archives name it.
struct Rule {
  enum class Kind { any, lr, unit_interval, non_negative, positive, at_least };
  Kind kind = Kind::any;
  int64_t minimum = 0;               // at_least
  const char* key = nullptr;         // config key when not the option name; "" for none
  bool optional_in_archive = false;  // older checkpoints lack it: it keeps its default
  bool none_is_zero = false;         // config: the string `none` stands for 0

  constexpr Rule config_key(const char* k) const {
    Rule r = *this;
    r.key = k;
    return r;
  }
  constexpr Rule added_later() const {
    Rule r = *this;
    r.optional_in_archive = true;
    return r;
  }
  constexpr Rule none_means_zero() const {
    Rule r = *this;
    r.none_is_zero = true;
    return r;
  }

  static constexpr Rule any() { return {}; }
  static constexpr Rule lr() { return {Kind::lr}; }                        // finite, >= 0
  static constexpr Rule unit_interval() { return {Kind::unit_interval}; }  // [0, 1), each beta
  static constexpr Rule non_negative() { return {Kind::non_negative}; }    // finite, >= 0
  static constexpr Rule positive() { return {Kind::positive}; }            // finite, > 0
  static constexpr Rule at_least(int64_t minimum) { return {Kind::at_least, minimum}; }
};

struct Field {
  const char* name;  // the C++ option and its archive key
  Rule rule;
  const char* doc;
  // The config (YAML) key: the name unless the rule says otherwise; "" when not configurable.
  std::string key() const { return rule.key != nullptr ? rule.key : name; }
};

using betas_t = std::tuple<double, double>;

#define BLOCKOPT_DECLARE_OPTION(T, name, default_value, rule, doc) \
  TORCH_ARG(T, name) = default_value;
#define BLOCKOPT_VISIT_OPTION(T, name, default_value, rule, doc) \
  visitor(::blockopt::optim::Field{#name, rule, doc}, self.name());

// Inside an Options struct: the fields of `FIELDS` and
//   visit_fields(self, visitor): visitor(const Field&, T& or const T& value) per field, in order.
#define BLOCKOPT_OPTION_FIELDS(FIELDS)                      \
  FIELDS(BLOCKOPT_DECLARE_OPTION)                           \
 public:                                                    \
  template <typename Self, typename Visitor>                \
  static void visit_fields(Self& self, Visitor&& visitor) { \
    FIELDS(BLOCKOPT_VISIT_OPTION)                           \
  }

// The AdamW fallback of a matrix optimizer (detail/matrix_optimizer.h); in configs the
// `fallback:` sub-map. `use_fallback` marks a fallback group and is no config key.
// NOTE: a field list, not a base struct: a TORCH_ARG setter returns the struct that declares
// it, so a base's setters would end a chain such as MuonOptions().fallback_lr(1e-3).lr(0.02).
#define BLOCKOPT_FALLBACK_FIELDS(X, LR, EPS)                                        \
  X(bool, use_fallback, false, Rule::any().config_key(""),                          \
    "this group runs the AdamW fallback")                                           \
  X(double, fallback_lr, LR, Rule::lr().config_key("fallback.lr"),                  \
    "AdamW fallback: learning rate")                                                \
  X(betas_t, fallback_betas, (std::make_tuple(0.9, 0.95)),                          \
    Rule::unit_interval().config_key("fallback.betas"), "AdamW fallback: (b1, b2)") \
  X(double, fallback_eps, EPS, Rule::non_negative().config_key("fallback.eps"),     \
    "AdamW fallback: eps")                                                          \
  X(double, fallback_weight_decay, 0.0,                                             \
    Rule::non_negative().config_key("fallback.weight_decay"), "AdamW fallback: decoupled decay")

// bf16/fp16 parameters: state and a master copy of the parameter in float32 (false: all state
// in the parameter dtype). Every optimizer has it.
#define BLOCKOPT_FLOAT32_STATE_FIELD(X)                   \
  X(bool, float32_state, true, Rule::any().added_later(), \
    "bf16/fp16 parameters: float32 state and master copy")

namespace detail {

// "fallback_betas" minus "betas" -> "fallback " (words of the name before `suffix`).
std::string name_prefix(const std::string& name, const std::string& suffix);

template <typename T>
void check_field(const T& value, const Field& field, const std::string& optimizer) {
  const std::string name = field.name;
  const auto kind = field.rule.kind;
  if constexpr (std::is_same_v<T, double>) {
    if (kind == Rule::Kind::lr) {
      const auto prefix = name_prefix(name, "lr");  // "fallback " -> "Muon fallback"
      check_lr(value, prefix.empty() ? optimizer
                                     : optimizer + " " + prefix.substr(0, prefix.size() - 1));
    }
    if (kind == Rule::Kind::unit_interval) check_beta(value, name, optimizer);
    if (kind == Rule::Kind::non_negative) check_non_negative(value, name, optimizer);
    if (kind == Rule::Kind::positive) check_positive(value, name, optimizer);
  } else if constexpr (std::is_same_v<T, betas_t>) {
    if (kind == Rule::Kind::unit_interval) {
      const auto prefix = name_prefix(name, "betas");
      check_beta(std::get<0>(value), prefix + "beta1", optimizer);
      check_beta(std::get<1>(value), prefix + "beta2", optimizer);
    }
  } else if constexpr (std::is_same_v<T, int64_t>) {
    if (kind == Rule::Kind::at_least) {
      require(value >= field.rule.minimum, optimizer,
              name + " must be >= " + std::to_string(field.rule.minimum) + ", got " +
                  std::to_string(value));
    }
  }
}

// Enums are archived as their names (the strings of older checkpoints).
template <typename T>
c10::IValue to_ivalue(const T& value) {
  if constexpr (std::is_enum_v<T>) {
    return c10::IValue(std::string(enum_name(value)));
  } else {
    return c10::IValue(value);
  }
}

template <typename T>
T from_ivalue(const c10::IValue& ivalue, const std::string& what) {
  if constexpr (std::is_enum_v<T>) {
    return parse_enum<T>(ivalue.toStringRef(), what);
  } else {
    return ivalue.to<T>();
  }
}

}  // namespace detail

// Checks every field's rule; throws std::invalid_argument("<optimizer>: ...").
template <typename Options>
void validate_fields(const Options& options, const std::string& optimizer) {
  Options::visit_fields(options, [&](const Field& field, const auto& value) {
    detail::check_field(value, field, optimizer);
  });
}

// Base of every blockopt Options: get_lr/set_lr, validate() and serialize() from
// Derived::visit_fields; Derived::kName names the optimizer in errors.
template <typename Derived>
struct FieldOptions : public torch::optim::OptimizerCloneableOptions<Derived> {
  double get_lr() const override { return self().lr(); }
  void set_lr(const double lr) override { self().lr(lr); }
  void validate() const { validate_fields(self(), Derived::kName); }

  // One archive entry per field, keyed by the option name.
  void serialize(torch::serialize::OutputArchive& archive) const override {
    Derived::visit_fields(self(), [&](const Field& field, const auto& value) {
      archive.write(field.name, detail::to_ivalue(value));
    });
  }

  void serialize(torch::serialize::InputArchive& archive) override {
    Derived::visit_fields(self(), [&](const Field& field, auto& value) {
      using T = std::decay_t<decltype(value)>;
      c10::IValue ivalue;
      if (archive.try_read(field.name, ivalue)) {
        value = detail::from_ivalue<T>(ivalue, std::string(Derived::kName) + "." + field.name);
      } else {
        TORCH_CHECK(field.rule.optional_in_archive, Derived::kName,
                    " options: the archive has no '", field.name, "'");
      }
    });
  }

 private:
  const Derived& self() const { return static_cast<const Derived&>(*this); }
  Derived& self() { return static_cast<Derived&>(*this); }
};

}  // namespace blockopt::optim
