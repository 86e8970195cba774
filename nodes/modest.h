// MoDeST's deterministic sample order (card 2), exposed for tests and tools.
#pragma once
#include <cstdint>
#include <vector>

#include "core/types.h"

namespace starling {

// The active nodes of `view` (view[i] = last round node i was seen active, -1 = gone) sorted by
// a hash of (seed, round, node): nodes with the same view compute the same order. `self` is
// always active; others drop out after `inactivity_threshold` silent rounds.
std::vector<NodeId> modest_order(std::uint64_t seed, int round, const std::vector<std::int32_t>& view, NodeId self,
                                 int inactivity_threshold);

}  // namespace starling
