// The event engine on the classic PHOLD workload: N logical processes, one event each in
// flight; handling an event schedules one new event at a random process after an
// exponential delay. Reports events per second on one core.
#include <benchmark/benchmark.h>

#include "core/rng.h"
#include "sim/event_queue.h"

namespace starling {
namespace {

void BM_Phold(benchmark::State& state) {
  const int processes = static_cast<int>(state.range(0));
  constexpr int kEventsPerIteration = 1'000'000;
  EventQueue queue;
  queue.reserve(static_cast<std::size_t>(processes) * 2);
  Rng rng(7, 0, Purpose::kTest);
  const double mean_delay_ns = 1e6;
  for (int p = 0; p < processes; ++p) queue.push(static_cast<SimTime>(rng.exponential(1.0 / mean_delay_ns)), 0, p, 0);
  std::int64_t events = 0;
  for (auto _ : state) {
    for (int i = 0; i < kEventsPerIteration; ++i) {
      const Event e = queue.pop();
      const auto target = static_cast<NodeId>(rng.below(static_cast<std::uint64_t>(processes)));
      queue.push(e.time + 1 + static_cast<SimTime>(rng.exponential(1.0 / mean_delay_ns)), 0, target, e.arg + 1);
    }
    events += kEventsPerIteration;
  }
  state.counters["events/s"] = benchmark::Counter(static_cast<double>(events), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Phold)->Arg(1000)->ArgName("processes")->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Phold)->Arg(100000)->ArgName("processes")->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace starling

BENCHMARK_MAIN();
