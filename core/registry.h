// Registry<T, Args...>: plugins of one kind (aggregators, compressors, ...) by name.
//
// Each plugin folder fills its registry explicitly on first use (no static-initialisation
// tricks that a static link silently drops). An unknown name is a ConfigError that lists the
// known names, so `aggregator.kind: meen` tells the user what to write instead.
#pragma once
#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/error.h"

namespace starling {

template <typename T, typename... Args>
class Registry {
 public:
  using Factory = std::function<std::unique_ptr<T>(Args...)>;
  struct Entry {
    std::string description;
    Factory factory;
  };

  explicit Registry(std::string kind) : kind_(std::move(kind)) {}

  // Registering a name twice is a programming error.
  void add(const std::string& name, std::string description, Factory factory) {
    if (!entries_.emplace(name, Entry{std::move(description), std::move(factory)}).second)
      throw std::logic_error(kind_ + " '" + name + "' registered twice");
  }

  bool contains(const std::string& name) const { return entries_.count(name) != 0; }

  // Sorted names, for listings and error messages.
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& [name, entry] : entries_) out.push_back(name);
    return out;
  }

  const std::string& description(const std::string& name) const { return lookup(name, "").description; }

  // Builds the plugin `name`; `key_path` is the config key that chose it, for the error message.
  std::unique_ptr<T> create(const std::string& name, const std::string& key_path, Args... args) const {
    return lookup(name, key_path).factory(std::forward<Args>(args)...);
  }

  // Throws the unknown-name ConfigError unless `name` is registered.
  void require(const std::string& name, const std::string& key_path) const { lookup(name, key_path); }

  const std::string& kind() const { return kind_; }

 private:
  const Entry& lookup(const std::string& name, const std::string& key_path) const {
    auto it = entries_.find(name);
    if (it == entries_.end()) {
      std::string known;
      for (const auto& [n, e] : entries_) known += (known.empty() ? "" : ", ") + n;
      throw ConfigError(key_path, "\"" + name + "\" is unknown " + kind_ + "; known: " + known);
    }
    return it->second;
  }

  std::string kind_;
  std::map<std::string, Entry> entries_;  // ordered: listings are stable
};

}  // namespace starling
