// PluginSpec: what a plugin (or a fixed config section) declares about itself, once: its name, a
// one-line description, its typed parameters (default, range or choices, unit, doc text) and its
// capabilities. Everything else comes from it: Section's typed reads take defaults and ranges
// from here, the config validation tells a misplaced key from a typo with it, and `starling
// plugins` and docs/config.md are rendered from it.
//
// Style: ns-3's attributes (a parameter is declared with its default and checker next to the
// code that uses it) and LevelDB's Options (every knob documented where it is defined).
#pragma once
#include <any>
#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

namespace starling {

enum class ParamType { kBool, kInt, kNumber, kString, kChoice, kIntList, kNumberList };

// Allowed values of a number or integer. Open below when `min_exclusive`.
struct Range {
  double min = -std::numeric_limits<double>::infinity();
  double max = std::numeric_limits<double>::infinity();
  bool min_exclusive = false;

  static Range any() { return {}; }
  static Range at_least(double lo) { return {lo, std::numeric_limits<double>::infinity(), false}; }
  static Range above(double lo) { return {lo, std::numeric_limits<double>::infinity(), true}; }
  static Range between(double lo, double hi) { return {lo, hi, false}; }  // [lo, hi]
  static Range above_until(double lo, double hi) { return {lo, hi, true}; }  // (lo, hi]
  std::string text() const;  // ">= 0", "> 0 and <= 1", "any"
};

using ParamValue = std::variant<bool, std::int64_t, double, std::string, std::vector<int>, std::vector<double>>;

struct ParamSpec {
  std::string name{};
  ParamType type = ParamType::kNumber;
  std::optional<ParamValue> default_value{};  // none: the key is required
  std::string default_doc{};                // when the default is computed ("1/(1+omega)", "= bandwidth_mbps")
  Range range{};
  std::vector<std::string> choices{};
  std::string unit{};
  std::string doc{};

  std::string type_text() const;     // "number", "integer", "one of: a, b", ...
  std::string default_text() const;  // "0.01", "(required)", "= bandwidth_mbps"
};

class PluginSpec {
 public:
  PluginSpec() = default;
  PluginSpec(std::string name, std::string description) : name_(std::move(name)), description_(std::move(description)) {}

  // Parameters, in the order a reader should see them. Declaring a name twice is a logic_error.
  PluginSpec& flag(std::string name, bool default_value, std::string doc);
  PluginSpec& integer(std::string name, std::int64_t default_value, Range range, std::string doc, std::string unit = "");
  PluginSpec& number(std::string name, double default_value, Range range, std::string doc, std::string unit = "");
  PluginSpec& text(std::string name, std::string default_value, std::string doc);
  PluginSpec& required_text(std::string name, std::string doc);
  PluginSpec& choice(std::string name, std::string default_value, std::vector<std::string> choices, std::string doc);
  PluginSpec& int_list(std::string name, std::vector<int> default_value, std::string doc);
  PluginSpec& number_list(std::string name, std::vector<double> default_value, std::string doc);
  // Documents that the last parameter's default is computed from other keys.
  PluginSpec& computed_default(std::string how);

  // A nested section of this plugin's (dpsgd's `merge`, modest's `crash`): `child.name()` is its
  // key. Section::child binds it, so its reads are declared like any other.
  PluginSpec& section(PluginSpec child);
  const PluginSpec* find_section(const std::string& key) const;
  const std::vector<PluginSpec>& sections() const { return sections_; }

  // Free-form capability lines for the docs ("unbiased: E[C(x)] = x"), next to typed traits.
  PluginSpec& note(std::string line);
  // Typed traits a kind defines for itself (ProtocolTraits, CompressorTraits).
  template <typename Traits>
  PluginSpec& with_traits(Traits traits) {
    traits_ = std::move(traits);
    return *this;
  }
  template <typename Traits>
  const Traits& traits() const {
    if (const auto* t = std::any_cast<Traits>(&traits_)) return *t;
    throw std::logic_error("plugin '" + name_ + "' declares no traits of the type its kind needs");
  }
  template <typename Traits>
  const Traits* traits_if() const {
    return std::any_cast<Traits>(&traits_);
  }
  bool has_traits() const { return traits_.has_value(); }

  const std::string& name() const { return name_; }
  const std::string& description() const { return description_; }
  const std::vector<ParamSpec>& params() const { return params_; }
  const std::vector<std::string>& notes() const { return notes_; }
  const ParamSpec* find(const std::string& name) const;

 private:
  PluginSpec& add(ParamSpec p);

  std::string name_;
  std::string description_;
  std::vector<ParamSpec> params_;
  std::vector<std::string> notes_;
  std::vector<PluginSpec> sections_;
  std::any traits_;
};

}  // namespace starling
