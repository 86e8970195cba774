// The config's layout, declared once: the fixed sections' specs (what build_run reads besides the
// plugins) and the kind slots (a section whose `kind`, or other selector, picks a plugin of one
// registry). build_run, the override logic, `starling plugins` and docs/config.md all read this.
#pragma once
#include <yaml-cpp/yaml.h>

#include <string>
#include <vector>

#include "core/registry.h"
#include "core/spec.h"

namespace starling {

// A fixed section: its path ("" for the top level) and its spec.
struct FixedSection {
  std::string path;
  const PluginSpec* spec;
};
const std::vector<FixedSection>& fixed_sections();
// The spec of the fixed section at `path`; a logic_error for an unknown path.
const PluginSpec& fixed_spec(const std::string& path);

// A section whose `selector` key picks a plugin of `catalog`. `common` declares the keys the
// section takes whatever the kind (null: none). `pseudo_kinds` are valid values that are not
// registered plugins and take no keys (data.partition.kind: natural).
struct KindSlot {
  std::string section;
  std::string selector;
  const SpecCatalog* catalog;
  const PluginSpec* common;
  std::vector<std::string> pseudo_kinds;
  std::string selector_path() const { return section.empty() ? selector : section + "." + selector; }
};
const std::vector<KindSlot>& kind_slots();

// The value `slot`'s selector takes in `document` (its default when absent: some depend on other
// keys, e.g. topology.kind on the protocol).
std::string chosen_kind(const YAML::Node& document, const KindSlot& slot);

// Applies `--set` assignments ("a.b=value", value parsed as YAML) in order, then removes the
// `unsets` key paths. An assignment that changes a slot's kind first drops the keys only the old
// kind takes (and, for protocol.kind, the plugin sections only the old protocol reads); each drop
// is described in the returned lines, for an info message. Throws ConfigError on bad syntax.
std::vector<std::string> apply_overrides(YAML::Node& document, const std::vector<std::string>& assignments,
                                         const std::vector<std::string>& unsets = {});

// Throws ConfigError naming the key path and line of the first key that appears twice in one
// mapping (yaml-cpp keeps the first silently). `file` prefixes the message.
void reject_duplicate_keys(const YAML::Node& document, const std::string& file);

}  // namespace starling
