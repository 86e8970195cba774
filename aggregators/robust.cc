// Robust aggregation rules (card 6.3). All of them treat every contribution as one vote
// (weights are ignored; `mean` is the weighted rule), order contributions by sender and give the
// same bits for any thread count: coordinate-wise rules work on fixed blocks of coordinates, the
// others reduce in sender order.
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "aggregators/aggregator.h"
#include "aggregators/robust.h"

namespace starling {

namespace {

constexpr Eigen::Index kBlock = 1 << 12;

std::vector<Contribution> checked(std::span<const Contribution> contributions, const char* rule) {
  if (contributions.empty()) throw Error(std::string(rule) + " aggregator: no contributions to combine");
  auto sorted = sorted_by_sender(contributions);
  for (const auto& c : sorted)
    if (c.vector->size() != sorted.front().vector->size())
      throw Error(std::string(rule) + " aggregator: contributions of different sizes");
  return sorted;
}

// Applies `reduce(values)` to the n contributions' values at every coordinate. Each block of
// coordinates is first transposed into a local coordinate-major buffer (one sequential read per
// contribution, instead of n interleaved streams per coordinate), then reduced value list by list.
template <typename Reduce>
Vector coordinate_wise(const std::vector<Contribution>& c, Reduce reduce) {
  constexpr Eigen::Index kTile = 256;  // coordinates per transpose: n x 256 floats stay in L2
  const Eigen::Index d = c.front().vector->size();
  const std::size_t n = c.size();
  Vector out(d);
  tbb::parallel_for(tbb::blocked_range<Eigen::Index>(0, d, kBlock), [&](const tbb::blocked_range<Eigen::Index>& r) {
    std::vector<float> tile(n * static_cast<std::size_t>(kTile)), values(n);
    for (Eigen::Index begin = r.begin(); begin < r.end(); begin += kTile) {
      const Eigen::Index count = std::min(kTile, r.end() - begin);
      for (std::size_t i = 0; i < n; ++i) {
        const float* src = c[i].vector->data() + begin;
        for (Eigen::Index j = 0; j < count; ++j) tile[static_cast<std::size_t>(j) * n + i] = src[j];
      }
      for (Eigen::Index j = 0; j < count; ++j) {
        std::copy_n(tile.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(j) * n), n, values.begin());
        out[begin + j] = reduce(values);
      }
    }
  }, tbb::simple_partitioner());
  return out;
}

class Median final : public Aggregator {
 public:
  Vector combine(std::span<const Contribution> contributions) override {
    return coordinate_wise(checked(contributions, "median"), [](std::vector<float>& v) {
      const std::size_t mid = v.size() / 2;
      std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(mid), v.end());
      if (v.size() % 2 == 1) return v[mid];
      const float upper = v[mid];
      return 0.5f * (*std::max_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(mid)) + upper);
    });
  }
};

// signSGD with majority vote (Bernstein et al. 2018): each coordinate takes the sign most
// contributions agree on (0 on a tie), scaled by the mean over contributions of mean |v_i|, which
// is 1 for plain sign messages (compressor sign, scaled: false) and the usual scale for scaled ones.
class MajorityVote final : public Aggregator {
 public:
  Vector combine(std::span<const Contribution> contributions) override {
    const auto c = checked(contributions, "majority_vote");
    double scale = 0.0;
    for (const auto& x : c)
      if (x.vector->size() > 0) scale += static_cast<double>(x.vector->cwiseAbs().mean());
    const auto magnitude = static_cast<float>(scale / static_cast<double>(c.size()));
    return coordinate_wise(c, [magnitude](std::vector<float>& v) {
      int votes = 0;
      for (float x : v) votes += (x > 0.0f) - (x < 0.0f);
      return static_cast<float>((votes > 0) - (votes < 0)) * magnitude;
    });
  }
};

// Drops the f largest and f smallest values of every coordinate and averages the rest.
class TrimmedMean final : public Aggregator {
 public:
  TrimmedMean(int f, double beta) : f_(f), beta_(beta) {}
  Vector combine(std::span<const Contribution> contributions) override {
    const auto c = checked(contributions, "trimmed_mean");
    const auto n = static_cast<int>(c.size());
    const int f = f_ > 0 ? f_ : static_cast<int>(std::floor(beta_ * n));
    if (2 * f >= n)
      throw Error("trimmed_mean aggregator: trimming " + std::to_string(f) + " from each side leaves nothing of " +
                  std::to_string(n) + " contributions");
    return coordinate_wise(c, [f](std::vector<float>& v) {
      // Two partial selections (O(n)) instead of a sort: the f smallest to the front, the f
      // largest to the back. The middle's order is a deterministic function of the input order
      // (contributions are sorted by sender), so the sum's bits are reproducible.
      const auto lo = v.begin() + f, hi = v.end() - f;
      std::nth_element(v.begin(), lo, v.end());
      std::nth_element(lo, hi, v.end());
      double sum = 0.0;
      for (auto it = lo; it != hi; ++it) sum += *it;
      return static_cast<float>(sum / static_cast<double>(v.size() - 2 * static_cast<std::size_t>(f)));
    });
  }

 private:
  int f_;
  double beta_;
};

// Krum (Blanchard et al.): score_i = sum of (squared) distances to its n - f - 2 nearest
// others; Krum returns the lowest-scoring contribution, Multi-Krum the mean of the m lowest.
class Krum final : public Aggregator {
 public:
  Krum(int f, int m, int neighbours, bool squared) : f_(f), m_(m), neighbours_(neighbours), squared_(squared) {}
  Vector combine(std::span<const Contribution> contributions) override {
    const auto c = checked(contributions, "krum");
    const auto n = static_cast<int>(c.size());
    const int k = neighbours_ > 0 ? neighbours_ : n - f_ - 2;
    if (k < 1 || k > n - 1)
      throw Error("krum aggregator: " + std::to_string(n) + " contributions with f = " + std::to_string(f_) +
                  " leave no neighbours to score (needs n > f + 2)");
    std::vector<std::vector<double>> dist(static_cast<std::size_t>(n), std::vector<double>(static_cast<std::size_t>(n)));
    tbb::parallel_for(0, n, [&](int i) {
      for (int j = 0; j < n; ++j) {
        const double sq = (*c[static_cast<std::size_t>(i)].vector - *c[static_cast<std::size_t>(j)].vector).cast<double>().squaredNorm();
        dist[static_cast<std::size_t>(i)][static_cast<std::size_t>(j)] = squared_ ? sq : std::sqrt(sq);
      }
    });
    std::vector<std::pair<double, int>> scores;
    for (int i = 0; i < n; ++i) {
      auto row = dist[static_cast<std::size_t>(i)];
      row.erase(row.begin() + i);
      std::partial_sort(row.begin(), row.begin() + k, row.end());
      scores.emplace_back(std::accumulate(row.begin(), row.begin() + k, 0.0), i);
    }
    std::sort(scores.begin(), scores.end());  // ties: lower sender first
    const int m = std::clamp(m_ > 0 ? m_ : n - f_, 1, n);  // multi_krum's default: all but f
    Vector out = Vector::Zero(c.front().vector->size());
    for (int s = 0; s < m; ++s) out += *c[static_cast<std::size_t>(scores[static_cast<std::size_t>(s)].second)].vector;
    return out / static_cast<float>(m);
  }

 private:
  int f_, m_, neighbours_;
  bool squared_;
};

// Geometric median by smoothed Weiszfeld iterations (RFA, Pillutla et al.), from the mean.
class GeometricMedian final : public Aggregator {
 public:
  GeometricMedian(int iterations, double nu, double tolerance) : iterations_(iterations), nu_(nu), tolerance_(tolerance) {}
  Vector combine(std::span<const Contribution> contributions) override {
    const auto c = checked(contributions, "geometric_median");
    Eigen::VectorXd z = Eigen::VectorXd::Zero(c.front().vector->size());
    for (const auto& x : c) z += x.vector->cast<double>();
    z /= static_cast<double>(c.size());
    for (int it = 0; it < iterations_; ++it) {
      Eigen::VectorXd next = Eigen::VectorXd::Zero(z.size());
      double total = 0.0;
      for (const auto& x : c) {
        const double w = 1.0 / std::max(nu_, (x.vector->cast<double>() - z).norm());
        next += w * x.vector->cast<double>();
        total += w;
      }
      next /= total;
      const double moved = (next - z).norm();
      z = std::move(next);
      if (moved <= tolerance_ * std::max(1.0, z.norm())) break;
    }
    return z.cast<float>();
  }

 private:
  int iterations_;
  double nu_, tolerance_;
};

// Centered clipping (Karimireddy et al.): v <- v + mean_i clip_tau(x_i - v), a few times,
// starting from the previous round's result ("momentum" initialisation; the coordinate-wise
// median the first time, a robust start that makes equal inputs come back unchanged).
class CenteredClip final : public Aggregator {
 public:
  CenteredClip(double tau, int iterations) : tau_(tau), iterations_(iterations) {}
  Vector combine(std::span<const Contribution> contributions) override {
    const auto c = checked(contributions, "centered_clip");
    Eigen::VectorXd v = previous_.size() == c.front().vector->size() ? previous_ : Median().combine(c).cast<double>();
    for (int it = 0; it < iterations_; ++it) {
      Eigen::VectorXd step = Eigen::VectorXd::Zero(v.size());
      for (const auto& x : c) {
        Eigen::VectorXd diff = x.vector->cast<double>() - v;
        const double norm = diff.norm();
        if (norm > tau_) diff *= tau_ / norm;
        step += diff;
      }
      v += step / static_cast<double>(c.size());
    }
    previous_ = v;
    return v.cast<float>();
  }

 private:
  double tau_;
  int iterations_;
  Eigen::VectorXd previous_;
};

}  // namespace

void register_robust_aggregators(AggregatorRegistry& r) {
  r.add("median", "coordinate-wise median", [](Section&) { return std::make_unique<Median>(); });
  r.add("majority_vote", "coordinate-wise sign most contributions agree on, times their mean |value| (signSGD)",
        [](Section&) { return std::make_unique<MajorityVote>(); });
  r.add("trimmed_mean", "coordinate-wise mean without the f largest and f smallest values", [](Section& s) {
    const int f = static_cast<int>(s.get_int("f", 0, 0));
    return std::make_unique<TrimmedMean>(f, s.get_double("beta", 0.1, 0.0, 0.5));
  });
  const auto krum = [](Section& s, bool multi) {
    const int f = static_cast<int>(s.get_int("f", 1, 0));
    const int m = multi ? static_cast<int>(s.get_int("m", 0, 0)) : 1;  // 0: all but f
    const int neighbours = static_cast<int>(s.get_int("neighbours", 0, 0));  // 0: n - f - 2
    return std::make_unique<Krum>(f, m, neighbours, s.get<bool>("squared", true));
  };
  r.add("krum", "the contribution closest to its n - f - 2 nearest others", [krum](Section& s) { return krum(s, false); });
  r.add("multi_krum", "the mean of the m contributions with the best Krum scores (default m = all but f)",
        [krum](Section& s) { return krum(s, true); });
  r.add("geometric_median", "smoothed Weiszfeld iterations (RFA)", [](Section& s) {
    const int iterations = static_cast<int>(s.get_int("iterations", 100, 1));
    const double nu = s.get_double("nu", 1e-6, 0.0, 1e9, true);
    return std::make_unique<GeometricMedian>(iterations, nu, s.get_double("tolerance", 1e-6, 0.0));
  });
  r.add("centered_clip", "iterative clipping around the previous aggregate", [](Section& s) {
    const double tau = s.get_double("tau", 1.0, 0.0, 1e9, true);
    return std::make_unique<CenteredClip>(tau, static_cast<int>(s.get_int("iterations", 3, 1)));
  });
}

}  // namespace starling
