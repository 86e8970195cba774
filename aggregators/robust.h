// Robust aggregation rules: median, trimmed_mean, krum, multi_krum, geometric_median, centered_clip,
// majority_vote, nna (a pre-step in front of any rule) and flag.
#pragma once
#include "aggregators/aggregator.h"

namespace starling {

void register_robust_aggregators(AggregatorRegistry& registry);

// NNA(pivot, V, q) of MoNNA (card 6.1): the mean of the q vectors of `vectors` closest to `pivot`
// in L2 distance (equal distances: earlier vector first; sums in double, in that order).
Vector nearest_average(const Vector& pivot, std::span<const Vector* const> vectors, std::size_t q);

}  // namespace starling
