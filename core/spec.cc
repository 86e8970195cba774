#include "core/spec.h"

#include <charconv>
#include <cmath>
#include <sstream>

namespace starling {

namespace {

// Integers as integers (1048576, not 1.04858e+06); others in the shortest form that reads back.
std::string number_text(double x) {
  char buf[64];
  const bool integral = std::isfinite(x) && x == std::floor(x) && std::fabs(x) < 1e15;
  const auto r = integral ? std::to_chars(buf, buf + sizeof buf, x, std::chars_format::fixed) : std::to_chars(buf, buf + sizeof buf, x);
  return std::string(buf, r.ptr);
}

template <typename T>
std::string list_text(const std::vector<T>& values) {
  std::string out = "[";
  for (std::size_t i = 0; i < values.size(); ++i) out += (i ? ", " : "") + number_text(static_cast<double>(values[i]));
  return out + "]";
}

}  // namespace

std::string Range::text() const {
  const bool low = std::isfinite(min), high = std::isfinite(max);
  if (!low && !high) return "any";
  std::string out;
  if (low) out = std::string(min_exclusive ? "> " : ">= ") + number_text(min);
  if (high) out += std::string(low ? " and " : "") + "<= " + number_text(max);
  return out;
}

std::string ParamSpec::type_text() const {
  switch (type) {
    case ParamType::kBool: return "true/false";
    case ParamType::kInt: return "integer";
    case ParamType::kNumber: return "number";
    case ParamType::kString: return "string";
    case ParamType::kChoice: {
      std::string out;
      for (const auto& c : choices) out += (out.empty() ? "" : " | ") + c;
      return out;
    }
    case ParamType::kIntList: return "list of integers";
    case ParamType::kNumberList: return "list of numbers";
  }
  return "";
}

std::string ParamSpec::default_text() const {
  if (!default_doc.empty()) return default_doc;
  if (!default_value) return "(required)";
  return std::visit(
      [](const auto& v) -> std::string {
        using V = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<V, bool>) return v ? "true" : "false";
        else if constexpr (std::is_same_v<V, std::int64_t>) return std::to_string(v);
        else if constexpr (std::is_same_v<V, double>) return number_text(v);
        else if constexpr (std::is_same_v<V, std::string>) return v.empty() ? "\"\"" : v;
        else return list_text(v);
      },
      *default_value);
}

PluginSpec& PluginSpec::add(ParamSpec p) {
  if (find(p.name)) throw std::logic_error("plugin '" + name_ + "' declares parameter '" + p.name + "' twice");
  params_.push_back(std::move(p));
  return *this;
}

PluginSpec& PluginSpec::flag(std::string name, bool default_value, std::string doc) {
  return add({.name = std::move(name), .type = ParamType::kBool, .default_value = default_value, .doc = std::move(doc)});
}

PluginSpec& PluginSpec::integer(std::string name, std::int64_t default_value, Range range, std::string doc, std::string unit) {
  return add({.name = std::move(name), .type = ParamType::kInt, .default_value = default_value, .range = range,
              .unit = std::move(unit), .doc = std::move(doc)});
}

PluginSpec& PluginSpec::number(std::string name, double default_value, Range range, std::string doc, std::string unit) {
  return add({.name = std::move(name), .type = ParamType::kNumber, .default_value = default_value, .range = range,
              .unit = std::move(unit), .doc = std::move(doc)});
}

PluginSpec& PluginSpec::text(std::string name, std::string default_value, std::string doc) {
  return add({.name = std::move(name), .type = ParamType::kString, .default_value = std::move(default_value), .doc = std::move(doc)});
}

PluginSpec& PluginSpec::required_text(std::string name, std::string doc) {
  return add({.name = std::move(name), .type = ParamType::kString, .doc = std::move(doc)});
}

PluginSpec& PluginSpec::choice(std::string name, std::string default_value, std::vector<std::string> choices, std::string doc) {
  return add({.name = std::move(name), .type = ParamType::kChoice, .default_value = std::move(default_value),
              .choices = std::move(choices), .doc = std::move(doc)});
}

PluginSpec& PluginSpec::int_list(std::string name, std::vector<int> default_value, std::string doc) {
  return add({.name = std::move(name), .type = ParamType::kIntList, .default_value = std::move(default_value), .doc = std::move(doc)});
}

PluginSpec& PluginSpec::number_list(std::string name, std::vector<double> default_value, std::string doc) {
  return add({.name = std::move(name), .type = ParamType::kNumberList, .default_value = std::move(default_value),
              .doc = std::move(doc)});
}

PluginSpec& PluginSpec::computed_default(std::string how) {
  if (params_.empty()) throw std::logic_error("plugin '" + name_ + "': computed_default before any parameter");
  params_.back().default_doc = std::move(how);
  return *this;
}

PluginSpec& PluginSpec::section(PluginSpec child) {
  if (find_section(child.name()) || find(child.name()))
    throw std::logic_error("plugin '" + name_ + "' declares '" + child.name() + "' twice");
  sections_.push_back(std::move(child));
  return *this;
}

const PluginSpec* PluginSpec::find_section(const std::string& key) const {
  for (const auto& s : sections_)
    if (s.name() == key) return &s;
  return nullptr;
}

PluginSpec& PluginSpec::note(std::string line) {
  notes_.push_back(std::move(line));
  return *this;
}

const ParamSpec* PluginSpec::find(const std::string& name) const {
  for (const auto& p : params_)
    if (p.name == name) return &p;
  return nullptr;
}

}  // namespace starling
