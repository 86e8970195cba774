#include "nodes/sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <span>
#include <tuple>

namespace starling {

int ClientSampler::per_round(int clients) const {
  return std::clamp(static_cast<int>(std::lround(fraction_ * clients)), 1, clients);
}

std::vector<int> weighted_without_replacement(const std::vector<double>& weights, int count, Rng& rng) {
  std::vector<double> w = weights;
  std::vector<int> out;
  count = std::min<int>(count, static_cast<int>(w.size()));
  for (int k = 0; k < count; ++k) {
    double total = 0.0;
    for (double x : w) total += x;
    double u = rng.uniform() * total;
    int pick = -1;
    for (std::size_t i = 0; i < w.size(); ++i) {
      if (w[i] <= 0.0) continue;
      pick = static_cast<int>(i);  // the last positive weight takes the rounding remainder
      if (u < w[i]) break;
      u -= w[i];
    }
    out.push_back(pick);
    w[static_cast<std::size_t>(pick)] = 0.0;
  }
  return out;
}

namespace {

std::vector<int> ascending(std::vector<int> v) {
  std::sort(v.begin(), v.end());
  return v;
}

std::vector<double> size_weights(const ClientPool& pool) {
  std::vector<double> w;
  for (auto n : *pool.sizes) w.push_back(static_cast<double>(std::max<std::int64_t>(n, 1)));
  return w;
}

// `count` clients uniformly without replacement.
class UniformSampler final : public ClientSampler {
 public:
  using ClientSampler::ClientSampler;
  std::vector<int> sample(const ClientPool& pool, int count, Rng& rng) override {
    auto chosen = rng.sample_without_replacement(pool.clients, std::min(count, pool.clients));
    return ascending({chosen.begin(), chosen.end()});
  }
};

// Successive draws with probability proportional to the client's training samples.
class WeightedSampler final : public ClientSampler {
 public:
  using ClientSampler::ClientSampler;
  std::vector<int> sample(const ClientPool& pool, int count, Rng& rng) override {
    return ascending(weighted_without_replacement(size_weights(pool), count, rng));
  }
};

// Uniformly among the clients online now (all of them if fewer than `count` are).
class AvailableSampler final : public ClientSampler {
 public:
  using ClientSampler::ClientSampler;
  std::vector<int> sample(const ClientPool& pool, int count, Rng& rng) override {
    std::vector<int> online;
    for (int c = 0; c < pool.clients; ++c)
      if (pool.reachable(c)) online.push_back(c);
    const int k = std::min(count, static_cast<int>(online.size()));
    std::vector<int> out;
    for (auto i : rng.sample_without_replacement(static_cast<std::int32_t>(online.size()), k))
      out.push_back(online[static_cast<std::size_t>(i)]);
    return ascending(out);
  }
};

// Power-of-choice (Cho, Wang, Joshi 2020, arXiv:2010.01243): d candidates drawn with probability
// proportional to data size, then the `count` with the highest local loss. The server knows only
// the loss each client reported with its last update (the paper's communication-free rpow-d
// variant); a client never heard from counts as +infinity, so it is tried first. Equal losses:
// lower index first.
class PowerOfChoiceSampler final : public ClientSampler {
 public:
  PowerOfChoiceSampler(double fraction, int candidates) : ClientSampler(fraction), candidates_(candidates) {}
  std::vector<int> sample(const ClientPool& pool, int count, Rng& rng) override {
    const int d = std::clamp(candidates_ > 0 ? candidates_ : 2 * count, std::min(count, pool.clients), pool.clients);
    auto candidates = weighted_without_replacement(size_weights(pool), d, rng);
    const auto loss = [&](int c) {
      const double l = (*pool.losses)[static_cast<std::size_t>(c)];
      return std::isnan(l) ? std::numeric_limits<double>::infinity() : l;
    };
    std::sort(candidates.begin(), candidates.end(),
              [&](int a, int b) { return loss(a) != loss(b) ? loss(a) > loss(b) : a < b; });
    candidates.resize(static_cast<std::size_t>(std::min(count, d)));
    return ascending(candidates);
  }

 private:
  int candidates_;
};

// A fixed seeded permutation of the clients, drawn once, taken `count` at a time and wrapping
// around: every client once per cycle of `clients` picks.
class RoundRobinSampler final : public ClientSampler {
 public:
  using ClientSampler::ClientSampler;
  std::vector<int> sample(const ClientPool& pool, int count, Rng& rng) override {
    if (order_.empty()) {
      order_.resize(static_cast<std::size_t>(pool.clients));
      std::iota(order_.begin(), order_.end(), 0);
      rng.shuffle(std::span<int>(order_));
    }
    std::vector<int> out;
    for (int k = 0; k < std::min(count, pool.clients); ++k) {
      out.push_back(order_[next_]);
      next_ = (next_ + 1) % order_.size();
    }
    return ascending(out);
  }

 private:
  std::vector<int> order_;
  std::size_t next_ = 0;
};

// Curriculum (Bengio et al. 2009) over clients with a linear pacing function (Hacohen and
// Weinshall 2019), as client-level curricula in FL (Vahidian et al., "When do curricula work in
// federated learning?", arXiv:2212.12712): clients ranked easiest first by the loss they last
// reported (clients never heard from after them, in a seeded order drawn once; equal losses keep
// that order), and round r samples uniformly among the first
// ceil(clients * min(1, start + (1 - start) (r - 1) / ramp_rounds)) of the ranking (at least count).
class CurriculumSampler final : public ClientSampler {
 public:
  CurriculumSampler(double fraction, double start, int ramp_rounds)
      : ClientSampler(fraction), start_(start), ramp_rounds_(ramp_rounds) {}
  std::vector<int> sample(const ClientPool& pool, int count, Rng& rng) override {
    if (tiebreak_.empty()) {
      std::vector<int> order(static_cast<std::size_t>(pool.clients));
      std::iota(order.begin(), order.end(), 0);
      rng.shuffle(std::span<int>(order));
      tiebreak_.resize(order.size());
      for (std::size_t i = 0; i < order.size(); ++i) tiebreak_[static_cast<std::size_t>(order[i])] = static_cast<int>(i);
    }
    std::vector<int> ranking(static_cast<std::size_t>(pool.clients));
    std::iota(ranking.begin(), ranking.end(), 0);
    const auto key = [&](int c) {
      const double l = (*pool.losses)[static_cast<std::size_t>(c)];
      return std::make_tuple(std::isnan(l), std::isnan(l) ? 0.0 : l, tiebreak_[static_cast<std::size_t>(c)]);
    };
    std::sort(ranking.begin(), ranking.end(), [&](int a, int b) { return key(a) < key(b); });
    const double share = std::min(1.0, start_ + (1.0 - start_) * (pool.round - 1) / ramp_rounds_);
    const int size = std::clamp(static_cast<int>(std::ceil(share * pool.clients - 1e-9)), std::min(count, pool.clients),
                                pool.clients);
    std::vector<int> out;
    for (auto i : rng.sample_without_replacement(size, std::min(count, size))) out.push_back(ranking[static_cast<std::size_t>(i)]);
    return ascending(out);
  }

 private:
  double start_;
  int ramp_rounds_;
  std::vector<int> tiebreak_;  // client -> rank in the seeded order
};

}  // namespace

SamplerRegistry& sampler_registry() {
  static SamplerRegistry registry = [] {
    SamplerRegistry r("sampler");
    const auto spec = [](std::string name, std::string description) {
      return PluginSpec(std::move(name), std::move(description))
          .number("fraction", 0.1, Range::above_until(0, 1), "fraction of the clients sampled per round (at least one)");
    };
    const auto fraction = [](Section& s) { return s.number("fraction"); };
    r.add(spec("uniform", "a fraction of the clients, uniformly without replacement"),
          [=](Section& s) { return std::make_unique<UniformSampler>(fraction(s)); });
    r.add(spec("weighted", "successive draws with probability proportional to each client's data size"),
          [=](Section& s) { return std::make_unique<WeightedSampler>(fraction(s)); });
    r.add(spec("available", "uniformly among the clients online at the start of the round"),
          [=](Section& s) { return std::make_unique<AvailableSampler>(fraction(s)); });
    r.add(spec("power_of_choice", "d size-weighted candidates, then those with the highest last reported loss")
              .integer("candidates", 0, Range::between(0, 1 << 30), "candidates d drawn per round; 0: twice the sample"),
          [=](Section& s) {
            const double f = fraction(s);
            return std::make_unique<PowerOfChoiceSampler>(f, s.integer<int>("candidates"));
          });
    r.add(spec("round_robin", "a seeded permutation of the clients, taken in turn"),
          [=](Section& s) { return std::make_unique<RoundRobinSampler>(fraction(s)); });
    r.add(spec("curriculum", "uniformly among the lowest-loss clients, a pool growing linearly to all")
              .number("start", 0.25, Range::above_until(0, 1), "the pool's first size, as a fraction of the clients")
              .integer("ramp_rounds", 50, Range::between(1, 1 << 30), "rounds until the pool holds every client", "rounds"),
          [=](Section& s) {
            const double f = fraction(s);
            const double start = s.number("start");
            return std::make_unique<CurriculumSampler>(f, start, s.integer<int>("ramp_rounds"));
          });
    return r;
  }();
  return registry;
}

}  // namespace starling
