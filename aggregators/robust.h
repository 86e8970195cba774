// Robust aggregation rules: median, trimmed_mean, krum, multi_krum, geometric_median, centered_clip.
#pragma once
#include "aggregators/aggregator.h"

namespace starling {

void register_robust_aggregators(AggregatorRegistry& registry);

}  // namespace starling
