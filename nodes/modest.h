// MoDeST's deterministic sample order (card 2), exposed for tests and tools.
#pragma once
#include <cstdint>
#include <vector>

#include "core/types.h"

namespace starling {

// What a node believes about another: the last round it was seen active, its membership index
// (bumped by each join or leave) and whether it is present. 12 bytes on the wire.
struct ModestViewEntry {
  std::int32_t round = 0;
  std::int32_t index = 0;
  std::int32_t present = 1;
};

// Merges what another node believes into `mine`: a higher membership index wins; at the same
// index the later round counts and absence (a leave, a detected crash) wins over presence.
void merge_view_entry(ModestViewEntry& mine, const ModestViewEntry& other);

// The active nodes of `view` sorted by a hash of (seed, round, node): nodes with the same view
// compute the same order. `self` is always active; others must be present and seen within
// `inactivity_threshold` rounds.
std::vector<NodeId> modest_order(std::uint64_t seed, int round, const std::vector<ModestViewEntry>& view, NodeId self,
                                 int inactivity_threshold);

}  // namespace starling
