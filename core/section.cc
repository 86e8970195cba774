#include "core/section.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <functional>
#include <sstream>

namespace starling {

namespace {

std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

std::string format_number(double x) {
  std::ostringstream s;
  s << x;
  return s.str();
}

}  // namespace

Section::Section(YAML::Node document)
    : Section(std::make_shared<Shared>(), "", document, YAML::Node(YAML::NodeType::Map)) {
  if (document && !document.IsNull() && !document.IsMap())
    throw ConfigError("", "the config must be a YAML mapping of keys to values");
  shared_->input = document;
  shared_->output = out_;
}

Section::Section(std::shared_ptr<Shared> shared, std::string prefix, YAML::Node in, YAML::Node out)
    : shared_(std::move(shared)), prefix_(std::move(prefix)), in_(in), out_(out) {}

std::string Section::shortest(double value) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, value);
  return std::string(buf, r.ptr);
}

std::string Section::path(const std::string& key) const { return prefix_.empty() ? key : prefix_ + "." + key; }

YAML::Node Section::input(const std::string& key) const {
  if (!in_ || !in_.IsMap()) return YAML::Node();
  const YAML::Node& in = in_;
  return in[key];
}

bool Section::has(const std::string& key) const {
  const YAML::Node node = input(key);
  return node.IsDefined() && !node.IsNull();
}

std::string Section::describe(const YAML::Node& node) {
  if (node.IsScalar()) return node.Scalar();
  YAML::Emitter e;
  e << YAML::Flow << node;
  return e.c_str();
}

void Section::fail(const std::string& key, const std::string& message) const { throw ConfigError(path(key), message); }

double Section::get_double(const std::string& key, double default_value, double min, double max, bool min_exclusive) {
  const double v = get<double>(key, default_value);
  const bool low = min_exclusive ? !(v > min) : !(v >= min);
  if (!std::isfinite(v) || low || v > max) {
    std::string allowed = std::string(min_exclusive ? "> " : ">= ") + format_number(min);
    if (std::isfinite(max)) allowed += " and <= " + format_number(max);
    fail(key, format_number(v) + " is out of range; must be " + allowed);
  }
  return v;
}

std::int64_t Section::get_int(const std::string& key, std::int64_t default_value, std::int64_t min, std::int64_t max) {
  const auto v = get<std::int64_t>(key, default_value);
  if (v < min || v > max) {
    std::string allowed = ">= " + std::to_string(min);
    if (max != std::numeric_limits<std::int64_t>::max()) allowed += " and <= " + std::to_string(max);
    fail(key, std::to_string(v) + " is out of range; must be " + allowed);
  }
  return v;
}

std::string Section::get_choice(const std::string& key, const std::string& default_value,
                                const std::vector<std::string>& allowed) {
  const auto v = get<std::string>(key, default_value);
  if (std::find(allowed.begin(), allowed.end(), v) == allowed.end()) {
    std::string list;
    for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
    fail(key, "\"" + v + "\" is unknown; known: " + list);
  }
  return v;
}

const ParamSpec& Section::declared(const std::string& key, ParamType type) const {
  for (const PluginSpec* spec : specs_)
    if (const ParamSpec* p = spec->find(key)) {
      const bool compatible = p->type == type || (type == ParamType::kString && p->type == ParamType::kChoice);
      if (!compatible) throw std::logic_error(path(key) + " is read as another type than its spec declares");
      return *p;
    }
  std::string specs;
  for (const PluginSpec* spec : specs_) specs += (specs.empty() ? "" : ", ") + spec->name();
  throw std::logic_error(path(key) + " is read but not declared in the spec" + (specs.empty() ? "" : " of " + specs));
}

double Section::number(const std::string& key) {
  const ParamSpec& p = declared(key, ParamType::kNumber);
  if (!p.default_value) return require_number(key, p);
  return get_double(key, std::get<double>(*p.default_value), p.range.min, p.range.max, p.range.min_exclusive);
}

double Section::number(const std::string& key, double computed_default) {
  const ParamSpec& p = declared(key, ParamType::kNumber);
  if (p.default_doc.empty()) throw std::logic_error(path(key) + ": a computed default the spec does not document");
  return get_double(key, computed_default, p.range.min, p.range.max, p.range.min_exclusive);
}

double Section::require_number(const std::string& key, const ParamSpec& p) {
  if (!has(key)) fail(key, "is required");
  return get_double(key, 0.0, p.range.min, p.range.max, p.range.min_exclusive);
}

std::int64_t Section::integer_impl(const std::string& key, const std::int64_t* computed_default) {
  const ParamSpec& p = declared(key, ParamType::kInt);
  if (computed_default && p.default_doc.empty()) throw std::logic_error(path(key) + ": a computed default the spec does not document");
  if (!p.default_value && !has(key)) fail(key, "is required");
  const auto lo = std::isfinite(p.range.min) ? static_cast<std::int64_t>(p.range.min) + (p.range.min_exclusive ? 1 : 0)
                                             : std::numeric_limits<std::int64_t>::min();
  const auto hi = std::isfinite(p.range.max) ? static_cast<std::int64_t>(p.range.max) : std::numeric_limits<std::int64_t>::max();
  const std::int64_t fallback = computed_default ? *computed_default : p.default_value ? std::get<std::int64_t>(*p.default_value) : 0;
  return get_int(key, fallback, lo, hi);
}

bool Section::flag(const std::string& key) {
  const ParamSpec& p = declared(key, ParamType::kBool);
  return p.default_value ? get<bool>(key, std::get<bool>(*p.default_value)) : require<bool>(key);
}

std::string Section::text(const std::string& key) {
  const ParamSpec& p = declared(key, ParamType::kString);
  if (!p.default_value) {
    if (p.type == ParamType::kChoice) {
      if (!has(key)) fail(key, "is required");
      return get_choice(key, "", p.choices);
    }
    return require<std::string>(key);
  }
  const auto& def = std::get<std::string>(*p.default_value);
  return p.type == ParamType::kChoice ? get_choice(key, def, p.choices) : get<std::string>(key, def);
}

std::vector<int> Section::int_list(const std::string& key) {
  const ParamSpec& p = declared(key, ParamType::kIntList);
  return p.default_value ? get<std::vector<int>>(key, std::get<std::vector<int>>(*p.default_value)) : require<std::vector<int>>(key);
}

std::vector<double> Section::number_list(const std::string& key) {
  const ParamSpec& p = declared(key, ParamType::kNumberList);
  return p.default_value ? get<std::vector<double>>(key, std::get<std::vector<double>>(*p.default_value))
                         : require<std::vector<double>>(key);
}

void Section::note_kinds(const std::string& selector, const std::string& chosen, const std::vector<const PluginSpec*>& kinds) {
  Shared::Kinds& k = shared_->kinds[prefix_];
  k.selector_path = path(selector);
  k.chosen = chosen;
  k.kinds_of_key.clear();
  for (const PluginSpec* spec : kinds)
    for (const ParamSpec& p : spec->params()) k.kinds_of_key[p.name].push_back(spec->name());
}

YAML::Node Section::raw(const std::string& key) {
  shared_->used.insert(path(key));
  shared_->opaque.insert(path(key));
  const YAML::Node node = input(key);
  if (node.IsDefined()) out_[key] = YAML::Clone(node);
  return node;
}

Section Section::child(const std::string& key) {
  YAML::Node in = input(key);
  if (in.IsDefined() && !in.IsNull() && !in.IsMap()) fail(key, "must be a mapping of keys to values, got \"" + describe(in) + "\"");
  shared_->used.insert(path(key));
  if (!out_[key].IsMap()) out_[key] = YAML::Node(YAML::NodeType::Map);
  Section child(shared_, path(key), in, out_[key]);
  for (const PluginSpec* spec : specs_)
    if (const PluginSpec* nested = spec->find_section(key)) child.bind(*nested);
  return child;
}

void Section::reject_unknown_keys() const {
  const auto& used = shared_->used;
  // Walk the input; the first key that was never read is an error, with a suggestion.
  std::function<void(const YAML::Node&, const std::string&)> walk = [&](const YAML::Node& node, const std::string& prefix) {
    if (!node.IsMap()) return;
    for (const auto& kv : node) {
      const std::string key = kv.first.as<std::string>();
      const std::string full = prefix.empty() ? key : prefix + "." + key;
      if (!used.count(full)) {
        if (auto it = shared_->kinds.find(prefix); it != shared_->kinds.end())
          if (auto k = it->second.kinds_of_key.find(key); k != it->second.kinds_of_key.end()) {
            std::string owners;
            for (const auto& o : k->second) owners += (owners.empty() ? "" : ", ") + o;
            throw ConfigError(full, "is a key of " + owners + "; " + it->second.selector_path + " is " + it->second.chosen +
                                        " (remove the key, or choose one of those)");
          }
        std::string best;
        std::size_t best_d = 3;  // suggest only close matches
        const std::string parent = prefix.empty() ? "" : prefix + ".";
        for (const auto& u : used) {
          if (u.rfind(parent, 0) != 0 || u.find('.', parent.size()) != std::string::npos) continue;
          const std::size_t d = edit_distance(key, u.substr(parent.size()));
          if (d < best_d) best_d = d, best = u;
        }
        // ... and the keys of the section's other kinds ("ratoi" -> compressor.ratio, a topk key).
        if (auto it = shared_->kinds.find(prefix); it != shared_->kinds.end())
          for (const auto& [other, kinds] : it->second.kinds_of_key)
            if (const std::size_t d = edit_distance(key, other); d < best_d) best_d = d, best = parent + other;
        throw ConfigError(full, "unknown key" + (best.empty() ? std::string("; check the spelling against docs/config.md")
                                                             : "; did you mean " + best + "?"));
      }
      if (!shared_->opaque.count(full)) walk(kv.second, full);
    }
  };
  walk(shared_->input, "");
}

YAML::Node Section::resolved() const { return shared_->output; }

void Section::apply_override(YAML::Node& document, const std::string& assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    throw ConfigError("--set", "\"" + assignment + "\" must look like key.path=value");
  const std::string key_path = assignment.substr(0, eq);
  YAML::Node value;
  try {
    value = YAML::Load(assignment.substr(eq + 1));
  } catch (const YAML::Exception& e) {
    throw ConfigError(key_path, "the --set value is not valid YAML: " + std::string(e.what()));
  }
  if (!document || document.IsNull()) document = YAML::Node(YAML::NodeType::Map);
  std::vector<std::string> parts;
  std::stringstream ss(key_path);
  for (std::string part; std::getline(ss, part, '.');) {
    if (part.empty()) throw ConfigError(key_path, "empty component in --set key path");
    parts.push_back(part);
  }
  std::vector<YAML::Node> chain{document};
  for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
    YAML::Node next = chain.back()[parts[i]];
    if (!next.IsDefined() || next.IsNull()) {
      chain.back()[parts[i]] = YAML::Node(YAML::NodeType::Map);
      next = chain.back()[parts[i]];
    } else if (!next.IsMap()) {
      throw ConfigError(key_path, "cannot set a key inside \"" + parts[i] + "\", which is not a mapping");
    }
    chain.push_back(next);
  }
  chain.back()[parts.back()] = value;
}

}  // namespace starling
