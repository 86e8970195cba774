// Local training throughput (samples/s and GFLOP/s), one thread, batch 32, on Fashion-MNIST
// shaped data; and the yardstick: OpenBLAS SGEMM (one thread, as training uses) running the
// same GEMMs alone, so the ratio is the share of training time spent in them.
#include <benchmark/benchmark.h>

#include <numeric>

#include "learning/model.h"
#include "learning/training.h"
#include <cblas.h>

namespace starling {
namespace {

constexpr int kInputs = 784, kClasses = 10, kSamples = 600, kBatch = 32;

Dataset random_dataset() {
  Dataset d;
  Rng rng(1, 0, Purpose::kTest);
  d.x.resize(kInputs, kSamples);
  for (Eigen::Index i = 0; i < d.x.size(); ++i) d.x.data()[i] = static_cast<float>(rng.uniform());
  for (int i = 0; i < kSamples; ++i) d.y.push_back(static_cast<std::int32_t>(rng.below(kClasses)));
  d.num_classes = kClasses;
  return d;
}

std::vector<int> hidden_for(int layers) { return layers == 0 ? std::vector<int>{} : std::vector<int>{200, 200}; }

// One epoch over a 600-sample client = a typical FedAvg local update on the quick-start.
void BM_LocalTraining(benchmark::State& state) {
  const Mlp model(kInputs, hidden_for(static_cast<int>(state.range(0))), kClasses);
  const Dataset data = random_dataset();
  std::vector<std::int32_t> idx(kSamples);
  std::iota(idx.begin(), idx.end(), 0);
  Rng init(1, 0, Purpose::kModelInit), shuffle(1, 0, Purpose::kDataShuffle);
  Vector params = model.init(init);
  std::int64_t samples = 0;
  for (auto _ : state) {
    Sgd sgd(0.01, 0.0, 0.0);
    samples += train_local(model, sgd, data, idx, 1, kBatch, shuffle, params).samples;
    benchmark::DoNotOptimize(params.data());
  }
  state.counters["samples/s"] = benchmark::Counter(static_cast<double>(samples), benchmark::Counter::kIsRate);
  state.counters["GFLOP/s"] =
      benchmark::Counter(static_cast<double>(samples) * model.flops_per_sample() / 1e9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_LocalTraining)->Arg(0)->ArgName("hidden_layers")->Unit(benchmark::kMillisecond);
BENCHMARK(BM_LocalTraining)->Arg(2)->ArgName("hidden_layers")->Unit(benchmark::kMillisecond);

// The GEMMs of one forward+backward pass of a batch, column-major like our model:
// per layer Z = W X (out x in x B), dW = D X^T (out x B x in), and dX = W^T D for layers > 0.
void BM_OpenBlasSameShapes(benchmark::State& state) {
  openblas_set_num_threads(1);
  std::vector<int> sizes{kInputs};
  for (int h : hidden_for(static_cast<int>(state.range(0)))) sizes.push_back(h);
  sizes.push_back(kClasses);
  const int biggest = *std::max_element(sizes.begin(), sizes.end());
  std::vector<float> w(static_cast<std::size_t>(biggest) * biggest, 0.01f), x(static_cast<std::size_t>(biggest) * kBatch, 0.5f),
      z(static_cast<std::size_t>(biggest) * kBatch), dx(static_cast<std::size_t>(biggest) * kBatch), g(static_cast<std::size_t>(biggest) * biggest);
  double flops = 0;
  for (std::size_t l = 0; l + 1 < sizes.size(); ++l)
    flops += 2.0 * sizes[l] * sizes[l + 1] * kBatch * (l > 0 ? 3 : 2);
  std::int64_t batches = 0;
  for (auto _ : state) {
    for (std::size_t l = 0; l + 1 < sizes.size(); ++l) {
      const int in = sizes[l], out = sizes[l + 1];
      cblas_sgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, out, kBatch, in, 1.0f, w.data(), out, x.data(), in, 0.0f, z.data(), out);
      cblas_sgemm(CblasColMajor, CblasNoTrans, CblasTrans, out, in, kBatch, 1.0f, z.data(), out, x.data(), in, 0.0f, g.data(), out);
      if (l > 0)
        cblas_sgemm(CblasColMajor, CblasTrans, CblasNoTrans, in, kBatch, out, 1.0f, w.data(), out, z.data(), out, 0.0f, dx.data(), in);
    }
    benchmark::DoNotOptimize(g.data());
    benchmark::DoNotOptimize(dx.data());
    ++batches;
  }
  state.counters["GFLOP/s"] = benchmark::Counter(static_cast<double>(batches) * flops / 1e9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_OpenBlasSameShapes)->Arg(0)->ArgName("hidden_layers")->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_OpenBlasSameShapes)->Arg(2)->ArgName("hidden_layers")->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace starling

BENCHMARK_MAIN();
