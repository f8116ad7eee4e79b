#pragma once
// Type traits for ConfigNode's conversions (config.h).
#include <string>
#include <type_traits>
#include <vector>

namespace blockopt::experiments::detail {

// "expected <name>" in conversion errors.
template <typename T>
struct ConfigTypeName {
  static const char* name() {
    if constexpr (std::is_same_v<T, bool>) return "a boolean";
    else if constexpr (std::is_integral_v<T>) return "an integer";
    else if constexpr (std::is_floating_point_v<T>) return "a number";
    else if constexpr (std::is_same_v<T, std::string>) return "a string";
    else return "a list";
  }
};

// True for a list of floating-point numbers (each checked to be finite).
template <typename T>
struct IsNumberList : std::false_type {};
template <typename T>
struct IsNumberList<std::vector<T>> : std::is_floating_point<T> {};

}  // namespace blockopt::experiments::detail
