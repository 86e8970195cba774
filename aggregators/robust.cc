// Robust aggregation rules (card 6.3; nna and flag: cards 6.1 and 6.2). All of them treat every
// contribution as one vote (weights are ignored; `mean` is the weighted rule, and nna hands them to
// its inner rule), order contributions by sender and give the
// same bits for any thread count: coordinate-wise rules work on fixed blocks of coordinates, the
// others reduce in sender order.
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <Eigen/Eigenvalues>

#include <algorithm>
#include <bit>
#include <limits>
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

// Like coordinate_wise, but for a tile of `count` coordinates at once: `reduce(row, n, count, out)`
// gets row(i) = the i-th smallest value of every coordinate of the tile (count floats), and writes
// the tile's `count` results to out. Sorting happens for a whole tile of coordinates at once
// with a bitonic network over the contributions (rows padded to a power of two with +inf): every
// compare-exchange is a min/max over a row of coordinates, which vectorises, where a per-
// coordinate nth_element spends its time on mispredicted branches.
template <typename Reduce>
Vector coordinate_wise_sorted(const std::vector<Contribution>& c, Reduce reduce) {
  constexpr Eigen::Index kTile = 256;
  const Eigen::Index d = c.front().vector->size();
  const std::size_t n = c.size(), rows = std::bit_ceil(n);
  Vector out(d);
  tbb::parallel_for(tbb::blocked_range<Eigen::Index>(0, d, kBlock), [&](const tbb::blocked_range<Eigen::Index>& r) {
    std::vector<float> tile(rows * static_cast<std::size_t>(kTile));
    for (Eigen::Index begin = r.begin(); begin < r.end(); begin += kTile) {
      const auto count = static_cast<std::size_t>(std::min(kTile, r.end() - begin));
      const auto row = [&](std::size_t i) { return tile.data() + i * static_cast<std::size_t>(kTile); };
      for (std::size_t i = 0; i < n; ++i) std::copy_n(c[i].vector->data() + begin, count, row(i));
      for (std::size_t i = n; i < rows; ++i) std::fill_n(row(i), count, std::numeric_limits<float>::infinity());
      for (std::size_t k = 2; k <= rows; k <<= 1)
        for (std::size_t j = k >> 1; j > 0; j >>= 1)
          for (std::size_t i = 0; i < rows; ++i) {
            const std::size_t l = i ^ j;
            if (l <= i) continue;
            float* lo = row(i);
            float* hi = row(l);
            if (i & k) std::swap(lo, hi);  // descending half of the bitonic merge
            for (std::size_t t = 0; t < count; ++t) {
              const float a = lo[t], b = hi[t];
              lo[t] = std::min(a, b);
              hi[t] = std::max(a, b);
            }
          }
      reduce(row, n, count, out.data() + begin);
    }
  }, tbb::simple_partitioner());
  return out;
}

class Median final : public Aggregator {
 public:
  Vector combine(std::span<const Contribution> contributions) override {
    return coordinate_wise_sorted(checked(contributions, "median"), [](auto row, std::size_t n, std::size_t count,
                                                                       float* out) {
      const float* upper = row(n / 2);
      const float* lower = row(n % 2 == 1 ? n / 2 : n / 2 - 1);
      for (std::size_t t = 0; t < count; ++t) out[t] = n % 2 == 1 ? upper[t] : 0.5f * (lower[t] + upper[t]);
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
    return coordinate_wise_sorted(c, [f](auto row, std::size_t n, std::size_t count, float* out) {
      std::vector<double> sum(count, 0.0);  // the kept values of each coordinate, added in ascending order
      for (std::size_t i = static_cast<std::size_t>(f); i < n - static_cast<std::size_t>(f); ++i) {
        const float* values = row(i);
        for (std::size_t t = 0; t < count; ++t) sum[t] += values[t];
      }
      const double kept = static_cast<double>(n - 2 * static_cast<std::size_t>(f));
      for (std::size_t t = 0; t < count; ++t) out[t] = static_cast<float>(sum[t] / kept);
    });
  }

 private:
  int f_;
  double beta_;
};

// Squared Euclidean distances between all pairs, in double; each entry has one fixed order.
std::vector<std::vector<double>> squared_distances(const std::vector<Contribution>& c) {
  const auto n = c.size();
  std::vector<std::vector<double>> dist(n, std::vector<double>(n, 0.0));
  tbb::parallel_for(std::size_t{0}, n, [&](std::size_t i) {
    for (std::size_t j = 0; j < n; ++j)
      if (j != i) dist[i][j] = (*c[i].vector - *c[j].vector).cast<double>().squaredNorm();
  });
  return dist;
}

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
    auto dist = squared_distances(c);
    if (!squared_)
      for (auto& row : dist)
        for (auto& x : row) x = std::sqrt(x);
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

// Nearest-neighbour mixing (NNM / CVA pre-step, cards 6.1 and 6.3): each contribution becomes the
// mean of the n - f contributions closest to it (itself included; equal distances: lower sender
// first), then the inner rule combines the mixed vectors, each under its sender and weight.
class Nna final : public Aggregator {
 public:
  Nna(int f, std::unique_ptr<Aggregator> inner) : f_(f), inner_(std::move(inner)) {}
  Vector combine(std::span<const Contribution> contributions) override {
    const auto c = checked(contributions, "nna");
    const auto n = c.size();
    if (static_cast<std::size_t>(f_) >= n)
      throw Error("nna aggregator: f = " + std::to_string(f_) + " leaves no neighbours among " + std::to_string(n) +
                  " contributions");
    const std::size_t q = n - static_cast<std::size_t>(f_);
    const auto dist = squared_distances(c);
    std::vector<Vector> mixed(n);
    tbb::parallel_for(std::size_t{0}, n, [&](std::size_t i) {
      std::vector<std::size_t> order(n);
      std::iota(order.begin(), order.end(), std::size_t{0});
      std::swap(order[0], order[i]);  // itself first, whatever the ties
      std::stable_sort(order.begin() + 1, order.end(), [&](std::size_t a, std::size_t b) {
        return dist[i][a] < dist[i][b] || (dist[i][a] == dist[i][b] && a < b);
      });
      Eigen::VectorXd sum = Eigen::VectorXd::Zero(c[i].vector->size());
      for (std::size_t k = 0; k < q; ++k) sum += c[order[k]].vector->cast<double>();
      mixed[i] = (sum / static_cast<double>(q)).cast<float>();
    });
    std::vector<Contribution> out;
    for (std::size_t i = 0; i < n; ++i) out.push_back({c[i].sender, c[i].weight, &mixed[i]});
    return inner_->combine(out);
  }

 private:
  int f_;
  std::unique_ptr<Aggregator> inner_;
};

// Flag Aggregator (Almasi et al., card 6.2). The unit vectors x_i = g_i / |g_i| are fitted by an
// r-dimensional subspace Y with IRLS: w_i = 1 / max(eps, sin theta_i), Y = the top r left singular
// vectors of [sqrt(w_i) x_i]; the output is (1/r) sum_i Y Y^T x_i. Y always lies in the span of the
// x_i (Y = X A), so all of it runs on the n x n Gram matrix K = X^T X: [sqrt(w) x] = X D has
// right singular vectors V from D K D = V S^2 V^T, and A = D V S^-1.
// Choices the card leaves open: Y starts at the direction of the mean of the x_i (the authors' code
// starts at a random subspace), a zero g_i stays zero, and singular values below 1e-12 of the
// largest are dropped. With `rescale` (default) the output is multiplied by median_i |g_i| / n:
// the card's output is a sum of n unit-length projections, n times too long for a FedAvg update
// with server lr 1, and identical inputs then come back unchanged; rescale: false is the card's.
class FlagAggregator final : public Aggregator {
 public:
  FlagAggregator(int r, int iterations, double eps, bool rescale)
      : r_(r), iterations_(iterations), eps_(eps), rescale_(rescale) {}
  Vector combine(std::span<const Contribution> contributions) override {
    const auto c = checked(contributions, "flag");
    const auto n = static_cast<Eigen::Index>(c.size());
    Eigen::VectorXd norm(n);
    for (Eigen::Index i = 0; i < n; ++i) norm[i] = c[static_cast<std::size_t>(i)].vector->cast<double>().norm();
    const Eigen::VectorXd inv = norm.unaryExpr([](double x) { return x > 0.0 ? 1.0 / x : 0.0; });
    Eigen::MatrixXd gram(n, n);
    tbb::parallel_for(Eigen::Index{0}, n, [&](Eigen::Index i) {
      for (Eigen::Index j = 0; j < n; ++j)
        gram(i, j) = c[static_cast<std::size_t>(i)].vector->cast<double>().dot(c[static_cast<std::size_t>(j)].vector->cast<double>()) *
                     inv[i] * inv[j];
    });
    // Y = X A; start at the mean direction.
    Eigen::MatrixXd a = Eigen::MatrixXd::Constant(n, 1, 1.0);
    const double mean_norm = std::sqrt(std::max(0.0, a.col(0).dot(gram * a.col(0))));
    if (mean_norm > 0.0) a /= mean_norm;
    else a.setZero();
    for (int it = 0; it < iterations_; ++it) {
      const Eigen::MatrixXd projections = a.transpose() * gram;  // column i: Y^T x_i
      Eigen::VectorXd root_w(n);
      for (Eigen::Index i = 0; i < n; ++i) {
        const double sin = std::sqrt(std::max(0.0, 1.0 - projections.col(i).squaredNorm()));
        root_w[i] = std::sqrt(1.0 / std::max(eps_, sin));
      }
      const Eigen::MatrixXd weighted = root_w.asDiagonal() * gram * root_w.asDiagonal();
      Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(weighted);
      const Eigen::VectorXd& lambda = eig.eigenvalues();  // ascending
      std::vector<Eigen::Index> keep;
      for (Eigen::Index k = n - 1; k >= 0 && static_cast<int>(keep.size()) < r_; --k)
        if (lambda[k] > 1e-24 * lambda[n - 1] && lambda[k] > 0.0) keep.push_back(k);
      a.resize(n, static_cast<Eigen::Index>(keep.size()));
      for (std::size_t k = 0; k < keep.size(); ++k)
        a.col(static_cast<Eigen::Index>(k)) = root_w.asDiagonal() * eig.eigenvectors().col(keep[k]) / std::sqrt(lambda[keep[k]]);
    }
    // sum_i Y Y^T x_i = X A A^T K 1: a combination of the x_i, applied to the g_i in sender order.
    Eigen::VectorXd coef = a * (a.transpose() * (gram * Eigen::VectorXd::Ones(n))) / static_cast<double>(r_);
    if (rescale_) {
      std::vector<double> sorted(norm.data(), norm.data() + n);
      std::sort(sorted.begin(), sorted.end());
      const auto mid = sorted.size() / 2;
      const double median = sorted.size() % 2 ? sorted[mid] : 0.5 * (sorted[mid - 1] + sorted[mid]);
      coef *= median / static_cast<double>(n);
    }
    Eigen::VectorXd out = Eigen::VectorXd::Zero(c.front().vector->size());
    for (Eigen::Index i = 0; i < n; ++i)
      if (coef[i] * inv[i] != 0.0) out += (coef[i] * inv[i]) * c[static_cast<std::size_t>(i)].vector->cast<double>();
    return out.cast<float>();
  }

 private:
  int r_, iterations_;
  double eps_;
  bool rescale_;
};

}  // namespace

Vector nearest_average(const Vector& pivot, std::span<const Vector* const> vectors, std::size_t q) {
  if (q == 0 || q > vectors.size())
    throw Error("nearest_average: cannot average " + std::to_string(q) + " of " + std::to_string(vectors.size()) +
                " vectors");
  std::vector<double> dist;
  for (const Vector* v : vectors) dist.push_back((v->cast<double>() - pivot.cast<double>()).squaredNorm());
  std::vector<std::size_t> order(vectors.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return dist[a] < dist[b]; });
  Eigen::VectorXd sum = Eigen::VectorXd::Zero(pivot.size());
  for (std::size_t k = 0; k < q; ++k) sum += vectors[order[k]]->cast<double>();
  return (sum / static_cast<double>(q)).cast<float>();
}

void register_robust_aggregators(AggregatorRegistry& r) {
  r.add("median", "coordinate-wise median", [](Section&) { return std::make_unique<Median>(); });
  r.add("majority_vote", "coordinate-wise sign most contributions agree on, times their mean |value| (signSGD)",
        [](Section&) { return std::make_unique<MajorityVote>(); });
  r.add(PluginSpec("trimmed_mean", "coordinate-wise mean without the f largest and f smallest values")
            .integer("f", 0, Range::at_least(0), "values trimmed at each end; 0: beta decides")
            .number("beta", 0.1, Range::between(0, 0.5), "fraction trimmed at each end when f is 0"),
        [](Section& s) {
          const int f = s.integer<int>("f");
          return std::make_unique<TrimmedMean>(f, s.number("beta"));
        });
  const auto krum_spec = [](std::string name, std::string description, bool multi) {
    PluginSpec spec(std::move(name), std::move(description));
    spec.integer("f", 1, Range::at_least(0), "Byzantine contributions tolerated");
    if (multi) spec.integer("m", 0, Range::at_least(0), "contributions averaged; 0: all but f");
    return spec.integer("neighbours", 0, Range::at_least(0), "nearest others in a score; 0: n - f - 2")
        .flag("squared", true, "score by squared distances (the paper's); false: distances");
  };
  const auto krum = [](Section& s, bool multi) {
    const int f = s.integer<int>("f");
    const int m = multi ? s.integer<int>("m") : 1;
    const int neighbours = s.integer<int>("neighbours");
    return std::make_unique<Krum>(f, m, neighbours, s.flag("squared"));
  };
  r.add(krum_spec("krum", "the contribution closest to its n - f - 2 nearest others", false),
        [krum](Section& s) { return krum(s, false); });
  r.add(krum_spec("multi_krum", "the mean of the m contributions with the best Krum scores (default m = all but f)", true),
        [krum](Section& s) { return krum(s, true); });
  r.add(PluginSpec("geometric_median", "smoothed Weiszfeld iterations (RFA)")
            .integer("iterations", 100, Range::at_least(1), "Weiszfeld iterations at most")
            .number("nu", 1e-6, Range::above_until(0, 1e9), "smoothing: distances below nu count as nu")
            .number("tolerance", 1e-6, Range::at_least(0), "stop when the estimate moves less (relative)"),
        [](Section& s) {
          const int iterations = s.integer<int>("iterations");
          const double nu = s.number("nu");
          return std::make_unique<GeometricMedian>(iterations, nu, s.number("tolerance"));
        });
  r.add(PluginSpec("centered_clip", "iterative clipping around the previous aggregate")
            .number("tau", 1.0, Range::above_until(0, 1e9), "clipping radius")
            .integer("iterations", 3, Range::at_least(1), "clipping iterations per aggregation"),
        [](Section& s) {
          const double tau = s.number("tau");
          return std::make_unique<CenteredClip>(tau, s.integer<int>("iterations"));
        });
  r.add(PluginSpec("nna", "nearest-neighbour averaging (each contribution -> mean of its n - f nearest), then the inner rule")
            .integer("f", 1, Range::at_least(0), "Byzantine contributions tolerated")
            .note("inner: an aggregator section ({kind: ..., its keys}, default mean) applied to the averaged contributions"),
        [](Section& s) {
          const int f = s.integer<int>("f");
          Section inner = s.child("inner");
          const auto kind = inner.get<std::string>("kind", "mean");
          // The registry is complete by the time a config is read.
          return std::make_unique<Nna>(f, aggregator_registry().create(kind, inner.path("kind"), inner));
        });
  r.add(PluginSpec("flag", "Flag Aggregator: projection onto the flag-median subspace of the normalized contributions (IRLS)")
            .integer("r", 1, Range::at_least(1), "subspace dimension")
            .integer("iterations", 4, Range::at_least(1), "IRLS iterations")
            .number("eps", 1e-6, Range::above_until(0, 1), "IRLS smoothing")
            .flag("rescale", true, "rescale the projection to the contributions' median norm"),
        [](Section& s) {
          const int rank = s.integer<int>("r");
          const int iterations = s.integer<int>("iterations");
          const double eps = s.number("eps");
          return std::make_unique<FlagAggregator>(rank, iterations, eps, s.flag("rescale"));
        });
}

}  // namespace starling
