// Aggregator throughput: 100 contributions of d = 10^6 (GB/s of input read), next to the
// machine's read bandwidth over the same 100 vectors measured in the same run. Default TBB
// parallelism on both sides: the aggregators split coordinates into blocks, so does the read.
#include <benchmark/benchmark.h>
#include <tbb/blocked_range.h>
#include <tbb/parallel_reduce.h>

#include <yaml-cpp/yaml.h>

#include "aggregators/aggregator.h"
#include "core/rng.h"

namespace starling {
namespace {

constexpr int kUpdates = 100;
constexpr std::int64_t kDim = 1'000'000;

const std::vector<Vector>& updates() {
  static const std::vector<Vector> u = [] {
    std::vector<Vector> out;
    for (int i = 0; i < kUpdates; ++i) {
      Rng rng(1, i, Purpose::kTest);
      Vector v(kDim);
      for (auto& x : v) x = static_cast<float>(rng.normal());
      out.push_back(std::move(v));
    }
    return out;
  }();
  return u;
}

void set_bytes(benchmark::State& state) {
  state.SetBytesProcessed(state.iterations() * kUpdates * kDim * static_cast<std::int64_t>(sizeof(float)));
}

// The physical limit: read every value once (blocked like the coordinate-wise rules).
void BM_ReadBandwidth(benchmark::State& state) {
  const auto& u = updates();
  for (auto _ : state) {
    const double total = tbb::parallel_reduce(
        tbb::blocked_range<Eigen::Index>(0, kDim, 1 << 14), 0.0,
        [&](const tbb::blocked_range<Eigen::Index>& r, double acc) {
          for (const Vector& v : u) acc += static_cast<double>(v.segment(r.begin(), r.size()).sum());
          return acc;
        },
        std::plus<>());
    benchmark::DoNotOptimize(total);
  }
  set_bytes(state);
}
BENCHMARK(BM_ReadBandwidth)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_Aggregate(benchmark::State& state, const std::string& yaml) {
  YAML::Node doc = YAML::Load("{aggregator: " + yaml + "}");
  Section root(doc);
  Section s = root.child("aggregator");
  auto aggregator = aggregator_registry().create(s.get<std::string>("kind", "mean"), s.path("kind"), s);
  const auto& u = updates();
  std::vector<Contribution> contributions;
  for (int i = 0; i < kUpdates; ++i) contributions.push_back({i, 1.0, &u[static_cast<std::size_t>(i)]});
  for (auto _ : state) benchmark::DoNotOptimize(aggregator->combine(contributions).data());
  set_bytes(state);
}
BENCHMARK_CAPTURE(BM_Aggregate, mean, std::string("{kind: mean}"))->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Aggregate, median, std::string("{kind: median}"))->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Aggregate, trimmed_mean, std::string("{kind: trimmed_mean, f: 10}"))
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Aggregate, majority_vote, std::string("{kind: majority_vote}"))
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Aggregate, centered_clip, std::string("{kind: centered_clip}"))
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Aggregate, geometric_median, std::string("{kind: geometric_median}"))
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Aggregate, krum, std::string("{kind: krum, f: 10}"))->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace starling

BENCHMARK_MAIN();
