// Section: typed, validated reading of one part of the YAML config.
//
// Every read names its full key path in errors ("train.lr: -1 is out of range; must be > 0"),
// records the value actually used (default included) into the resolved config that is stored
// with the run, and marks the key as known, so that after parsing any key nobody read is
// reported as unknown, with the nearest known key as a suggestion.
#pragma once
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/spec.h"

namespace starling {

class Section {
 public:
  // The root of a config document.
  explicit Section(YAML::Node document);

  // Full key path of `key` in this section ("train.lr").
  std::string path(const std::string& key) const;
  const std::string& path() const { return prefix_; }
  bool has(const std::string& key) const;

  template <typename T>
  T get(const std::string& key, const T& default_value) {
    T value = has(key) ? convert<T>(key) : default_value;
    record(key, value);
    return value;
  }
  template <typename T>
  T require(const std::string& key) {
    if (!has(key)) fail(key, "is required");
    T value = convert<T>(key);
    record(key, value);
    return value;
  }
  // Numbers with a range check; the message names the bounds.
  double get_double(const std::string& key, double default_value, double min,
                    double max = std::numeric_limits<double>::infinity(), bool min_exclusive = false);
  std::int64_t get_int(const std::string& key, std::int64_t default_value, std::int64_t min,
                       std::int64_t max = std::numeric_limits<std::int64_t>::max());
  // A string that must be one of `allowed`.
  std::string get_choice(const std::string& key, const std::string& default_value,
                         const std::vector<std::string>& allowed);

  // Spec-driven reads. A plugin's factory gets its section bound to its PluginSpec (and the
  // kind's common keys); these take the default, range and choices from the declaration, so the
  // docs and the checks cannot drift apart. Reading an undeclared key is a std::logic_error: a
  // plugin bug that the registry conformance suites catch.
  void bind(const PluginSpec& spec) {
    if (std::find(specs_.begin(), specs_.end(), &spec) == specs_.end()) specs_.push_back(&spec);
  }
  double number(const std::string& key);
  double number(const std::string& key, double computed_default);  // spec declares computed_default()
  template <typename I = std::int64_t>
  I integer(const std::string& key) {
    return static_cast<I>(integer_impl(key, nullptr));
  }
  template <typename I = std::int64_t>
  I integer(const std::string& key, std::int64_t computed_default) {
    return static_cast<I>(integer_impl(key, &computed_default));
  }
  bool flag(const std::string& key);
  std::string text(const std::string& key);  // a string or a choice; required when declared without default
  std::vector<int> int_list(const std::string& key);
  std::vector<double> number_list(const std::string& key);

  // Records that this section's `selector` key chose `chosen` among `kinds`, so that an unread key
  // of another kind is reported as such ("compressor.ratio is a key of topk, randk; compressor.kind
  // is none") rather than as a typo.
  void note_kinds(const std::string& selector, const std::string& chosen, const std::vector<const PluginSpec*>& kinds);

  // The raw YAML of `key` (undefined if absent), marked as read; for callers that walk it
  // themselves (e.g. a sweep grid whose keys are key paths).
  YAML::Node raw(const std::string& key);

  // A nested mapping (may be absent: then every read takes its default).
  Section child(const std::string& key);

  [[noreturn]] void fail(const std::string& key, const std::string& message) const;

  // After all reads: throws ConfigError for the first key that nobody read.
  void reject_unknown_keys() const;
  // The config as actually used: every key read, with defaults filled in.
  YAML::Node resolved() const;

  // The shortest text that reads back as `value` (0.15, not 0.1499999...).
  static std::string shortest(double value);

  // Apply "a.b.c=value" to a document (value parsed as YAML). Throws ConfigError on bad syntax.
  static void apply_override(YAML::Node& document, const std::string& assignment);

 private:
  struct Shared {
    YAML::Node input;
    YAML::Node output;
    std::set<std::string> used;
    std::set<std::string> opaque;  // read whole by raw(): their inner keys are the caller's business
    struct Kinds {
      std::string selector_path, chosen;
      std::map<std::string, std::vector<std::string>> kinds_of_key;
    };
    std::map<std::string, Kinds> kinds;  // by section path
  };
  const ParamSpec& declared(const std::string& key, ParamType type) const;
  std::int64_t integer_impl(const std::string& key, const std::int64_t* computed_default);
  double require_number(const std::string& key, const ParamSpec& p);
  Section(std::shared_ptr<Shared> shared, std::string prefix, YAML::Node in, YAML::Node out);

  YAML::Node input(const std::string& key) const;
  template <typename T>
  T convert(const std::string& key) const {
    const YAML::Node node = input(key);
    try {
      if constexpr (std::is_same_v<T, std::string>) {
        if (!node.IsScalar()) throw YAML::BadConversion(node.Mark());
      }
      return node.as<T>();
    } catch (const YAML::Exception&) {
      fail(key, "\"" + describe(node) + "\" is not " + type_name<T>());
    }
  }
  template <typename T>
  static std::string type_name() {
    if constexpr (std::is_same_v<T, bool>) return "true or false";
    else if constexpr (std::is_integral_v<T>) return "an integer";
    else if constexpr (std::is_floating_point_v<T>) return "a number";
    else if constexpr (std::is_same_v<T, std::string>) return "a string";
    else if constexpr (std::is_same_v<T, std::vector<int>>) return "a list of integers, e.g. [200, 200]";
    else if constexpr (std::is_same_v<T, std::vector<double>>) return "a list of numbers";
    else return "a list of the right type";
  }
  static std::string describe(const YAML::Node& node);
  template <typename T>
  void record(const std::string& key, const T& value) {
    shared_->used.insert(path(key));
    if constexpr (std::is_floating_point_v<T>) out_[key] = shortest(value);  // 0.15, not 0.1499999...
    else out_[key] = value;
  }


  std::shared_ptr<Shared> shared_;
  std::string prefix_;
  YAML::Node in_;
  YAML::Node out_;
  std::vector<const PluginSpec*> specs_;
};

}  // namespace starling
