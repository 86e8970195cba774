// Registry<T, Args...>: plugins of one kind (aggregators, compressors, ...) by name, each with
// its PluginSpec (core/spec.h): parameters, docs and traits are declared once, at registration.
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
#include "core/section.h"
#include "core/spec.h"

namespace starling {

// What every registry shows of itself, whatever it builds: for listings, docs and validation.
class SpecCatalog {
 public:
  virtual ~SpecCatalog() = default;
  virtual const std::string& kind() const = 0;
  virtual std::vector<std::string> names() const = 0;
  virtual bool contains(const std::string& name) const = 0;
  // The spec of `name`; an unknown name is the ConfigError that lists the known ones.
  virtual const PluginSpec& spec(const std::string& name, const std::string& key_path = "") const = 0;
  std::vector<const PluginSpec*> specs() const {
    std::vector<const PluginSpec*> out;
    for (const auto& n : names()) out.push_back(&spec(n));
    return out;
  }
};

template <typename T, typename... Args>
class Registry final : public SpecCatalog {
 public:
  using Factory = std::function<std::unique_ptr<T>(Args...)>;
  struct Entry {
    PluginSpec spec;
    Factory factory;
  };

  explicit Registry(std::string kind) : kind_(std::move(kind)) {}

  // Registering a name twice is a programming error.
  void add(PluginSpec spec, Factory factory) {
    const std::string name = spec.name();
    if (!entries_.emplace(name, Entry{std::move(spec), std::move(factory)}).second)
      throw std::logic_error(kind_ + " '" + name + "' registered twice");
  }
  // A plugin without parameters.
  void add(const std::string& name, std::string description, Factory factory) {
    add(PluginSpec(name, std::move(description)), std::move(factory));
  }

  bool contains(const std::string& name) const override { return entries_.count(name) != 0; }

  // Sorted names, for listings and error messages.
  std::vector<std::string> names() const override {
    std::vector<std::string> out;
    for (const auto& [name, entry] : entries_) out.push_back(name);
    return out;
  }

  const std::string& description(const std::string& name) const { return lookup(name, "").spec.description(); }
  const PluginSpec& spec(const std::string& name, const std::string& key_path = "") const override {
    return lookup(name, key_path).spec;
  }

  // Builds the plugin `name`; `key_path` is the config key that chose it, for the error message.
  // The plugin's Section (the first argument, for every kind) is bound to its spec first.
  std::unique_ptr<T> create(const std::string& name, const std::string& key_path, Args... args) const {
    const Entry& entry = lookup(name, key_path);
    bind_first(entry.spec, args...);
    return entry.factory(std::forward<Args>(args)...);
  }

  // Throws the unknown-name ConfigError unless `name` is registered.
  void require(const std::string& name, const std::string& key_path) const { lookup(name, key_path); }

  const std::string& kind() const override { return kind_; }

 private:
  template <typename... Rest>
  static void bind_first(const PluginSpec& spec, Section& section, Rest&...) {
    section.bind(spec);
  }
  template <typename... Rest>
  static void bind_first(const PluginSpec&, Rest&...) {}

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
