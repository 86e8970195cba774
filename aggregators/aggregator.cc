#include "aggregators/aggregator.h"

#include "aggregators/robust.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>

namespace starling {

std::vector<Contribution> sorted_by_sender(std::span<const Contribution> contributions) {
  std::vector<Contribution> out(contributions.begin(), contributions.end());
  std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.sender < b.sender; });
  return out;
}

namespace {

// Weighted mean. Parallel over fixed blocks of coordinates; inside a block the contributions
// are added in sender order, so every coordinate's sum has one fixed order.
class Mean final : public Aggregator {
 public:
  bool is_weighted_mean() const override { return true; }
  Vector combine(std::span<const Contribution> contributions) override {
    if (contributions.empty()) throw Error("mean aggregator: no contributions to combine");
    const auto sorted = sorted_by_sender(contributions);
    const Eigen::Index dim = sorted.front().vector->size();
    double total = 0.0;
    for (const auto& c : sorted) {
      if (c.vector->size() != dim) throw Error("mean aggregator: contributions of different sizes");
      total += c.weight;
    }
    if (!(total > 0.0)) throw Error("mean aggregator: total weight is not positive");
    Vector out(dim);
    constexpr Eigen::Index kBlock = 1 << 14;
    tbb::parallel_for(tbb::blocked_range<Eigen::Index>(0, dim, kBlock), [&](const tbb::blocked_range<Eigen::Index>& r) {
      auto seg = out.segment(r.begin(), r.size());
      seg.setZero();
      for (const auto& c : sorted) seg += static_cast<float>(c.weight / total) * c.vector->segment(r.begin(), r.size());
    }, tbb::simple_partitioner());
    return out;
  }
};

}  // namespace

AggregatorRegistry& aggregator_registry() {
  static AggregatorRegistry registry = [] {
    AggregatorRegistry r("aggregator");
    r.add("mean", "mean weighted by sample counts (FedAvg)", [](Section&) { return std::make_unique<Mean>(); });
    register_robust_aggregators(r);
    return r;
  }();
  return registry;
}

}  // namespace starling
