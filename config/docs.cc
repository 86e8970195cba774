#include "config/docs.h"

#include <algorithm>
#include <functional>
#include <map>
#include <sstream>

#include "compressors/compressor.h"
#include "config/sections.h"
#include "core/error.h"
#include "nodes/protocol.h"
#include "topologies/topology.h"

namespace starling {

namespace {

std::string cli_name(const SpecCatalog& catalog) {
  std::string name = catalog.kind();
  std::replace(name.begin(), name.end(), ' ', '_');
  return name;
}

// One catalog per kind, with the slots that select from it.
std::map<std::string, std::pair<const SpecCatalog*, std::vector<const KindSlot*>>> kinds() {
  std::map<std::string, std::pair<const SpecCatalog*, std::vector<const KindSlot*>>> out;
  for (const KindSlot& slot : kind_slots()) {
    auto& entry = out[cli_name(*slot.catalog)];
    entry.first = slot.catalog;
    entry.second.push_back(&slot);
  }
  return out;
}

std::string joined(const std::vector<std::string>& items, const std::string& sep = ", ") {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : sep) + s;
  return out;
}

std::string codec_text(const CodecNeed& need) {
  std::string kind = need.kind == CodecNeed::Kind::kAny ? "any" : need.kind == CodecNeed::Kind::kDense ? "dense only" : "none only";
  return kind + (need.feedback ? "" : ", no feedback");
}

// The declared traits as "name: value" lines, whatever the kind.
std::vector<std::string> trait_lines(const PluginSpec& spec) {
  std::vector<std::string> lines;
  const auto yes = [](bool b) { return std::string(b ? "yes" : "no"); };
  if (const auto* t = spec.traits_if<ProtocolTraits>()) {
    lines.push_back("roles: " + std::string(t->server_based ? "server (node 0) and clients (nodes 1..clients)"
                                                          : "peers (nodes 0..clients-1)"));
    lines.push_back("default topology: " + t->default_topology);
    lines.push_back("reads sections: " + joined(t->sections));
    lines.push_back("attacks: " + yes(t->attacks) + "; personalized evaluation: " + yes(t->personalized) +
                    "; availability/dropout/link noise: " + yes(t->participation) + "; FedProx term: " + yes(t->prox));
    lines.push_back("deployment: " + (t->no_deploy.empty() ? std::string("yes (starling launch)") : "no: " + t->no_deploy));
    lines.push_back("uplink compressor: " + codec_text(t->uplink) +
                    (t->server_based ? "; downlink compressor: " + codec_text(t->downlink) : ""));
  }
  if (const auto* t = spec.traits_if<CompressorTraits>()) {
    lines.push_back("dense: " + yes(t->dense) + "; lossless: " + yes(t->lossless) + "; contractive: " + yes(t->contractive) +
                    "; linear: " + yes(t->linear));
    lines.push_back("unbiased: " + (t->unbiased.empty() ? std::string("no") : t->unbiased));
  }
  if (const auto* t = spec.traits_if<TopologyTraits>())
    lines.push_back("regular: " + yes(t->regular) + "; time-varying: " + yes(t->time_varying));
  for (const auto& note : spec.notes()) lines.push_back(note);
  return lines;
}

std::string range_text(const ParamSpec& p) {
  if (p.type == ParamType::kInt || p.type == ParamType::kNumber) return p.range.text();
  return "";
}

void text_params(std::ostringstream& out, const PluginSpec& spec, const std::string& prefix) {
  for (const auto& p : spec.params()) {
    out << "    " << prefix << p.name << " (" << p.type_text() << ", default " << p.default_text();
    if (const auto r = range_text(p); !r.empty() && r != "any") out << ", " << r;
    if (!p.unit.empty()) out << ", " << p.unit;
    out << ")\n        " << p.doc << "\n";
  }
  for (const auto& child : spec.sections()) {
    out << "    " << prefix << child.name() << ": " << child.description() << "\n";
    text_params(out, child, prefix + child.name() + ".");
  }
}

void text_plugin(std::ostringstream& out, const PluginSpec& spec, bool full) {
  out << "  " << spec.name() << "  " << spec.description() << "\n";
  if (!full) return;
  text_params(out, spec, "");
  for (const auto& line : trait_lines(spec)) out << "    * " << line << "\n";
}

std::string code(const std::string& s) {
  std::string out(1, '`');
  out += s;
  out += '`';
  return out;
}

// "the run as a whole" -> "The run as a whole."
std::string sentence(std::string s) {
  if (!s.empty() && s[0] >= 'a' && s[0] <= 'z') s[0] = static_cast<char>(s[0] - 'a' + 'A');
  return s + ".";
}

// Markdown table cells must not contain a bare pipe.
std::string cell(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '|') out += '\\';
    out += c;
  }
  return out;
}

void markdown_params(std::ostringstream& out, const PluginSpec& spec, const std::string& prefix) {
  if (spec.params().empty() && spec.sections().empty()) {
    out << "No parameters.\n\n";
    return;
  }
  out << "| key | type | default | allowed | doc |\n|---|---|---|---|---|\n";
  std::function<void(const PluginSpec&, const std::string&)> rows = [&](const PluginSpec& s, const std::string& pre) {
    for (const auto& p : s.params()) {
      std::string allowed = range_text(p);
      if (allowed == "any") allowed.clear();
      if (!p.unit.empty()) allowed += (allowed.empty() ? "" : ", ") + p.unit;
      out << "| `" << pre << p.name << "` | " << cell(p.type_text()) << " | " << cell(p.default_text()) << " | "
          << cell(allowed) << " | " << cell(p.doc) << " |\n";  // cells as typed
    }
    for (const auto& child : s.sections()) rows(child, pre + child.name() + ".");
  };
  rows(spec, prefix);
  out << "\n";
}

}  // namespace

std::vector<std::string> plugin_kinds() {
  std::vector<std::string> out;
  for (const auto& [name, entry] : kinds()) out.push_back(name);
  return out;
}

std::string plugins_text(const std::string& kind, const std::string& name) {
  const auto all = kinds();
  std::ostringstream out;
  if (kind.empty()) {
    for (const auto& [k, entry] : all) {
      std::vector<std::string> paths;
      for (const KindSlot* slot : entry.second) paths.push_back(slot->selector_path());
      out << k << " (" << joined(paths) << ")\n";
      for (const PluginSpec* spec : entry.first->specs()) text_plugin(out, *spec, false);
    }
    out << "\n`starling plugins KIND` lists a kind's parameters; `starling plugins KIND NAME` one plugin's, with its traits.\n";
    return out.str();
  }
  const auto it = all.find(kind);
  if (it == all.end()) throw ConfigError("plugins", "\"" + kind + "\" is not a plugin kind; known: " + joined(plugin_kinds()));
  const SpecCatalog& catalog = *it->second.first;
  if (!name.empty()) {
    text_plugin(out, catalog.spec(name, "plugins " + kind), true);
    return out.str();
  }
  for (const KindSlot* slot : it->second.second)
    if (slot->common) {
      out << "keys of every " << slot->section << " section:\n";
      text_params(out, *slot->common, "");
    }
  for (const PluginSpec* spec : catalog.specs()) text_plugin(out, *spec, true);
  return out.str();
}

std::string config_reference_markdown() {
  std::ostringstream out;
  out << "<!-- Generated from the plugins' specs by `starling plugins --markdown`; do not edit. "
         "`cmake --build build/release --target config-docs` rewrites it, and a test fails when it is stale. -->\n"
      << "# Config reference\n\n"
      << "A config is a YAML mapping. Every key below is optional unless its default says *(required)*; a run "
         "stores the config it actually used, defaults filled in (`starling show RUN`). Any key can be overridden "
         "with `--set key.path=value` and removed with `--unset key.path`. A section's `kind` (or `data.dataset`, "
         "`train.optimizer`) picks a plugin, whose keys sit in the same section; switching the kind with `--set` or "
         "a sweep drops the old kind's keys.\n\n"
      << "## Sections\n\n";
  for (const FixedSection& section : fixed_sections()) {
    out << "### " << (section.path.empty() ? "Top level" : code(section.path)) << "\n\n"
        << sentence(section.spec->description()) << "\n\n";
    markdown_params(out, *section.spec, section.path.empty() ? "" : section.path + ".");
    for (const auto& note : section.spec->notes()) out << "- " << note << "\n";
    if (!section.spec->notes().empty()) out << "\n";
  }
  out << "## Plugins\n\n";
  for (const auto& [kind, entry] : kinds()) {
    std::vector<std::string> paths;
    for (const KindSlot* slot : entry.second) paths.push_back(code(slot->selector_path()));
    out << "### " << kind << " (" << joined(paths) << ")\n\n";
    const auto fixed = [](const PluginSpec* spec) {
      return std::any_of(fixed_sections().begin(), fixed_sections().end(), [&](const FixedSection& f) { return f.spec == spec; });
    };
    for (const KindSlot* slot : entry.second)
      if (slot->common && !fixed(slot->common)) {  // data's and train's own keys are under Sections
        out << "Keys of every `" << slot->section << "` section, whatever its kind:\n\n";
        markdown_params(out, *slot->common, slot->section + ".");
        break;
      }
    for (const PluginSpec* spec : entry.first->specs()) {
      out << "#### " << code(spec->name()) << "\n\n" << sentence(spec->description()) << "\n\n";
      markdown_params(out, *spec, entry.second.front()->section + ".");
      for (const auto& line : trait_lines(*spec)) out << "- " << line << "\n";
      if (!trait_lines(*spec).empty()) out << "\n";
    }
  }
  std::string text = out.str();
  while (text.size() >= 2 && text[text.size() - 1] == '\n' && text[text.size() - 2] == '\n') text.pop_back();
  return text;
}

}  // namespace starling
