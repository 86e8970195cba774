// Documentation rendered from the specs (config/sections.h and every registry): the listing of
// `starling plugins` and docs/config.md, the complete config reference. Nothing here is typed by
// hand twice: a new plugin appears in both by being registered.
#pragma once
#include <string>
#include <vector>

namespace starling {

// Plugin kinds by their CLI name ("protocol", "compressor", "server_optimizer", ...), sorted.
std::vector<std::string> plugin_kinds();

// `starling plugins`: every kind with its plugins (no kind), one kind's plugins with their
// parameters, or one plugin in full. Throws ConfigError for an unknown kind or name, listing the
// known ones.
std::string plugins_text(const std::string& kind = "", const std::string& name = "");

// docs/config.md: every fixed section and every kind slot with all its plugins, their
// parameters (type, default, range, unit, doc) and traits, as Markdown.
std::string config_reference_markdown();

}  // namespace starling
