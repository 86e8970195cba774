#include "core/rng.h"

#include <cmath>
#include <numbers>

namespace starling {

std::uint64_t mix64(std::uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

namespace {
__extension__ using u128 = unsigned __int128;  // 64x64->128 multiply (GCC, Clang)
constexpr std::uint64_t kGamma = 0x9e3779b97f4a7c15ULL;  // golden-ratio increment
std::uint64_t combine(std::uint64_t key, std::uint64_t value) { return mix64(key ^ mix64(value + kGamma)); }
}  // namespace

Rng::Rng(std::uint64_t seed, NodeId node, Purpose purpose)
    : key_(combine(combine(mix64(seed), static_cast<std::uint64_t>(static_cast<std::int64_t>(node))),
                   static_cast<std::uint64_t>(purpose))) {}

Rng Rng::substream(std::uint64_t index) const { return Rng(combine(key_ ^ 0x5bd1e995ULL, index)); }

// Output i is two rounds of mixing of (key, i): a counter-based generator in the style of
// SplitMix64 with a per-stream key; distinct keys give unrelated sequences.
std::uint64_t Rng::next_u64() {
  const std::uint64_t c = counter_++;
  return mix64(mix64(key_ + c * kGamma) ^ key_);
}

double Rng::uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

std::uint64_t Rng::below(std::uint64_t n) {
  if (n <= 1) return 0;
  u128 m = static_cast<u128>(next_u64()) * n;
  auto low = static_cast<std::uint64_t>(m);
  if (low < n) {
    const std::uint64_t threshold = (0 - n) % n;
    while (low < threshold) {
      m = static_cast<u128>(next_u64()) * n;
      low = static_cast<std::uint64_t>(m);
    }
  }
  return static_cast<std::uint64_t>(m >> 64);
}

double Rng::normal() {
  double u, v, s;
  do {
    u = 2.0 * uniform() - 1.0;
    v = 2.0 * uniform() - 1.0;
    s = u * u + v * v;
  } while (s >= 1.0 || s == 0.0);
  return u * std::sqrt(-2.0 * std::log(s) / s);  // the second variate is dropped: no hidden state
}

double Rng::lognormal(double mu, double sigma) { return std::exp(normal(mu, sigma)); }

double Rng::exponential(double rate) { return -std::log1p(-uniform()) / rate; }

double Rng::gamma(double shape) {
  if (shape < 1.0) {  // boost: Gamma(a) = Gamma(a + 1) * U^(1/a)
    const double u = uniform();
    return gamma(shape + 1.0) * std::pow(u == 0.0 ? 0x1.0p-53 : u, 1.0 / shape);
  }
  const double d = shape - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
  while (true) {
    double x, v;
    do {
      x = normal();
      v = 1.0 + c * x;
    } while (v <= 0.0);
    v = v * v * v;
    const double u = uniform();
    if (u < 1.0 - 0.0331 * x * x * x * x) return d * v;
    if (std::log(u) < 0.5 * x * x + d * (1.0 - v + std::log(v))) return d * v;
  }
}

std::vector<double> Rng::dirichlet(double alpha, int k) {
  std::vector<double> p(static_cast<std::size_t>(k));
  double sum = 0.0;
  for (auto& x : p) sum += (x = gamma(alpha));
  if (sum <= 0.0) {  // every draw underflowed (tiny alpha): put all mass on one coordinate
    std::fill(p.begin(), p.end(), 0.0);
    p[below(static_cast<std::uint64_t>(k))] = 1.0;
    return p;
  }
  for (auto& x : p) x /= sum;
  return p;
}

std::vector<std::int32_t> Rng::sample_without_replacement(std::int32_t n, std::int32_t k) {
  std::vector<std::int32_t> pool(static_cast<std::size_t>(n));
  for (std::int32_t i = 0; i < n; ++i) pool[i] = i;
  for (std::int32_t i = 0; i < k; ++i) std::swap(pool[i], pool[i + below(static_cast<std::uint64_t>(n - i))]);
  pool.resize(static_cast<std::size_t>(k));
  return pool;
}

}  // namespace starling
