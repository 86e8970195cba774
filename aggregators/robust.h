// Robust aggregation rules: median, trimmed_mean, krum, multi_krum, geometric_median, centered_clip,
// majority_vote, nna (a pre-step in front of any rule) and flag.
#pragma once
#include "aggregators/aggregator.h"

namespace starling {

void register_robust_aggregators(AggregatorRegistry& registry);

}  // namespace starling
