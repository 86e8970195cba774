// Compression throughput: encode + decode of a d-vector per operator, in GB/s of float32 input,
// next to a plain copy of the same data (the physical limit), one thread. Decoding writes into
// the receiver's buffer, reused from message to message (decode_into).
#include <benchmark/benchmark.h>

#include <cstring>

#include "compressors/compressor.h"

namespace starling {
namespace {

Vector input(std::int64_t d) {
  Rng rng(1, 0, Purpose::kTest);
  Vector v(d);
  for (auto& x : v) x = static_cast<float>(rng.normal());
  return v;
}

void BM_Copy(benchmark::State& state) {
  const Vector v = input(state.range(0));
  Vector out(v.size());
  for (auto _ : state) {
    std::memcpy(out.data(), v.data(), static_cast<std::size_t>(v.size()) * sizeof(float));
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * v.size() * static_cast<std::int64_t>(sizeof(float)));
}

void BM_EncodeDecode(benchmark::State& state, const std::string& yaml) {
  YAML::Node doc = YAML::Load("{compressor: " + yaml + "}");
  Section root(doc);
  Section s = root.child("compressor");
  auto c = make_compressor(s);
  const Vector v = input(state.range(0));
  Rng rng(2, 0, Purpose::kCompression);
  std::size_t bytes = 0;
  Vector out;  // the receiver's buffer, reused message after message
  for (auto _ : state) {
    const Payload p = c->encode(v, rng);
    bytes = p.size();
    c->decode_into(p, v.size(), out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(state.iterations() * v.size() * static_cast<std::int64_t>(sizeof(float)));
  state.counters["wire_bytes_per_coord"] = static_cast<double>(bytes) / static_cast<double>(v.size());
}

void sizes(benchmark::internal::Benchmark* b) {
  for (std::int64_t d : {100'000, 1'000'000, 10'000'000}) b->Arg(d);
  b->ArgName("d")->Unit(benchmark::kMillisecond);
}

BENCHMARK(BM_Copy)->Apply(sizes);
BENCHMARK_CAPTURE(BM_EncodeDecode, none, std::string("{kind: none}"))->Apply(sizes);
BENCHMARK_CAPTURE(BM_EncodeDecode, bf16, std::string("{kind: bf16}"))->Apply(sizes);
BENCHMARK_CAPTURE(BM_EncodeDecode, topk_1pct, std::string("{kind: topk, ratio: 0.01}"))->Apply(sizes);
BENCHMARK_CAPTURE(BM_EncodeDecode, randk_1pct, std::string("{kind: randk, ratio: 0.01}"))->Apply(sizes);
BENCHMARK_CAPTURE(BM_EncodeDecode, qsgd_4bit, std::string("{kind: qsgd, levels: 7}"))->Apply(sizes);
BENCHMARK_CAPTURE(BM_EncodeDecode, sign, std::string("{kind: sign}"))->Apply(sizes);
BENCHMARK_CAPTURE(BM_EncodeDecode, count_sketch, std::string("{kind: count_sketch, ratio: 0.1, recover: 0.01}"))
    ->Apply(sizes);
BENCHMARK_CAPTURE(BM_EncodeDecode, random_projection, std::string("{kind: random_projection, ratio: 0.01}"))
    ->Apply(sizes);

}  // namespace
}  // namespace starling

BENCHMARK_MAIN();
