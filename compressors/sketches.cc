// Sketching operators (card 7.9): count sketch (linear: a server may add sketches) and a
// subsampled randomized Hadamard projection. Both draw their randomness from seeds, so only the
// sketch travels.
#include <algorithm>
#include <bit>
#include <cmath>

#include "compressors/operators.h"
#include "compressors/wire.h"

namespace starling {

namespace {

std::int64_t count_from(double ratio, std::int64_t k, std::int64_t d) {
  if (k > 0) return std::min(k, d);
  return std::clamp<std::int64_t>(std::llround(ratio * static_cast<double>(d)), d > 0 ? 1 : 0, d);
}

// ---------------------------------------------------------------- count sketch

// rows x columns table; row j adds sign_j(a) * v_a into column h_j(a). The hashes come from a
// fixed seed every node shares, so sketches of different senders add up coordinate-wise.
// Decoding estimates v_a as the median over rows of sign_j(a) * T[j, h_j(a)], then keeps the
// `recover` largest estimates (FetchSGD's top-k recovery) or, with recover 0, all of them.
// Payload: u32 rows, u32 columns, rows * columns float32 (row-major).
class CountSketch final : public Compressor {
 public:
  CountSketch(int rows, std::int64_t columns, double ratio, double recover)
      : rows_(rows), columns_(columns), ratio_(ratio), recover_(recover) {}

  Payload encode(const Vector& v, Rng&) override {
    require_finite(v, "count_sketch");
    const std::int64_t d = v.size(), c = columns_for(d);
    std::vector<float> table(static_cast<std::size_t>(rows_ * c), 0.0f);
    for (int j = 0; j < rows_; ++j)
      for (std::int64_t a = 0; a < d; ++a) {
        const Slot s = slot(j, a, c);
        table[static_cast<std::size_t>(j * c + s.column)] += s.sign * v[a];
      }
    Payload out;
    ByteWriter w(out);
    w.put<std::uint32_t>(static_cast<std::uint32_t>(rows_));
    w.put<std::uint32_t>(static_cast<std::uint32_t>(c));
    w.put_floats(table.data(), table.size());
    return out;
  }

  Vector decode(const Payload& p, std::int64_t d) override { return unsketch(read_table(p, d), d); }

  bool linear() const override { return true; }
  Vector decode_mean(std::span<const Payload* const> payloads, std::span<const double> weights,
                     std::int64_t d) override {
    std::vector<float> sum;
    double total = 0.0;
    for (std::size_t i = 0; i < payloads.size(); ++i) {
      const auto table = read_table(*payloads[i], d);
      if (sum.empty()) sum.assign(table.size(), 0.0f);
      for (std::size_t t = 0; t < table.size(); ++t) sum[t] += static_cast<float>(weights[i]) * table[t];
      total += weights[i];
    }
    if (sum.empty()) return Vector::Zero(d);
    if (total > 0.0)
      for (auto& x : sum) x /= static_cast<float>(total);
    return unsketch(sum, d);
  }

  std::unique_ptr<Compressor> clone() const override {
    return std::make_unique<CountSketch>(rows_, columns_, ratio_, recover_);
  }

 private:
  struct Slot {
    std::int64_t column;
    float sign;
  };
  static constexpr std::uint64_t kHashSeed = 0xC0FFEE5EEDull;
  static Slot slot(int row, std::int64_t a, std::int64_t columns) {
    const std::uint64_t h = mix64(kHashSeed ^ mix64((static_cast<std::uint64_t>(row) << 40) ^ static_cast<std::uint64_t>(a)));
    const auto column = static_cast<std::int64_t>(((h >> 32) * static_cast<std::uint64_t>(columns)) >> 32);
    return {column, h & 1u ? -1.0f : 1.0f};
  }
  std::int64_t columns_for(std::int64_t d) const {
    if (columns_ > 0) return columns_;
    return std::max<std::int64_t>(1, std::llround(ratio_ * static_cast<double>(d) / rows_));
  }
  std::vector<float> read_table(const Payload& p, std::int64_t d) const {
    ByteReader r(p, "count_sketch");
    const auto rows = r.get<std::uint32_t>(), columns = r.get<std::uint32_t>();
    if (rows != static_cast<std::uint32_t>(rows_) || columns != static_cast<std::uint64_t>(columns_for(d)))
      r.fail("a " + std::to_string(rows) + " x " + std::to_string(columns) + " sketch does not match this run's " +
             std::to_string(rows_) + " x " + std::to_string(columns_for(d)));
    std::vector<float> table(static_cast<std::size_t>(rows) * columns);
    r.get_floats(table.data(), table.size());
    r.expect_end();
    return table;
  }
  Vector unsketch(const std::vector<float>& table, std::int64_t d) const {
    const std::int64_t c = columns_for(d);
    Vector estimate(d);
    std::vector<float> votes(static_cast<std::size_t>(rows_));
    for (std::int64_t a = 0; a < d; ++a) {
      for (int j = 0; j < rows_; ++j) {
        const Slot s = slot(j, a, c);
        votes[static_cast<std::size_t>(j)] = s.sign * table[static_cast<std::size_t>(j * c + s.column)];
      }
      const auto mid = votes.begin() + rows_ / 2;
      std::nth_element(votes.begin(), mid, votes.end());
      float median = *mid;
      if (rows_ % 2 == 0) median = 0.5f * (median + *std::max_element(votes.begin(), mid));
      estimate[a] = median;
    }
    if (recover_ <= 0.0) return estimate;
    const std::int64_t k = count_from(recover_, 0, d);
    std::vector<std::uint32_t> order(static_cast<std::size_t>(d));
    for (std::int64_t a = 0; a < d; ++a) order[static_cast<std::size_t>(a)] = static_cast<std::uint32_t>(a);
    std::nth_element(order.begin(), order.begin() + k, order.end(), [&](std::uint32_t x, std::uint32_t y) {
      const float fx = std::abs(estimate[x]), fy = std::abs(estimate[y]);
      return fx > fy || (fx == fy && x < y);
    });
    Vector out = Vector::Zero(d);
    for (std::int64_t i = 0; i < k; ++i) out[order[static_cast<std::size_t>(i)]] = estimate[order[static_cast<std::size_t>(i)]];
    return out;
  }

  int rows_;
  std::int64_t columns_;  // 0: from ratio
  double ratio_, recover_;
};

// ---------------------------------------------------------------- random projection (SRHT)

// In-place orthonormal fast Walsh-Hadamard transform of a power-of-two length vector.
void hadamard(std::vector<float>& x) {
  const std::size_t n = x.size();
  for (std::size_t h = 1; h < n; h *= 2)
    for (std::size_t i = 0; i < n; i += 2 * h)
      for (std::size_t j = i; j < i + h; ++j) {
        const float a = x[j], b = x[j + h];
        x[j] = a + b, x[j + h] = a - b;
      }
  const float scale = 1.0f / std::sqrt(static_cast<float>(n));
  for (auto& v : x) v *= scale;
}

// Random signs D, from the message seed.
void flip_signs(std::vector<float>& x, std::uint64_t seed) {
  for (std::size_t i = 0; i < x.size(); ++i)
    if (mix64(seed ^ mix64(i)) & 1u) x[i] = -x[i];
}

// The card allows a Gaussian R or a subsampled randomized Hadamard transform; we use the SRHT
// because a dense Gaussian R costs O(k d) per message and the SRHT O(d log d). With n = d rounded
// up to a power of two, H orthonormal and S k of n coordinates drawn without replacement:
// send y = S H D v; receive v^ = (n / k) D H S^T y, which is unbiased (E[S^T S] = (k / n) I).
// Payload: u64 seed (D and S), u32 k, k float32.
class RandomProjection final : public Compressor {
 public:
  RandomProjection(double ratio, std::int64_t k) : ratio_(ratio), k_(k) {}
  Payload encode(const Vector& v, Rng& rng) override {
    require_finite(v, "random_projection");
    const std::int64_t d = v.size(), n = padded(d), k = count_from(ratio_, k_, n);
    const std::uint64_t seed = rng.next_u64();
    std::vector<float> x(static_cast<std::size_t>(n), 0.0f);
    std::copy(v.data(), v.data() + d, x.begin());
    flip_signs(x, seed);
    hadamard(x);
    Payload out;
    ByteWriter w(out);
    w.put<std::uint64_t>(seed);
    w.put<std::uint32_t>(static_cast<std::uint32_t>(k));
    for (auto i : draw_indices(seed, k, n)) w.put<float>(x[i]);
    return out;
  }
  Vector decode(const Payload& p, std::int64_t d) override {
    ByteReader r(p, "random_projection");
    const auto seed = r.get<std::uint64_t>();
    const auto k = r.get<std::uint32_t>();
    const std::int64_t n = padded(d);
    if (k > n || (k == 0 && d > 0)) r.fail("k = " + std::to_string(k) + " does not fit a model of " + std::to_string(d));
    std::vector<float> x(static_cast<std::size_t>(n), 0.0f);
    const float scale = static_cast<float>(static_cast<double>(n) / k);
    for (auto i : draw_indices(seed, k, n)) x[i] = scale * r.get<float>();
    r.expect_end();
    hadamard(x);  // H is symmetric: H^T = H
    flip_signs(x, seed);
    return Eigen::Map<const Vector>(x.data(), d);
  }
  // H D is orthonormal, so the error is that of keeping k of n coordinates scaled by n/k: n/k - 1.
  std::optional<double> unbiased_variance(std::int64_t d) const override {
    const std::int64_t n = padded(d);
    return n > 0 ? static_cast<double>(n) / static_cast<double>(count_from(ratio_, k_, n)) - 1.0 : 0.0;
  }
  std::unique_ptr<Compressor> clone() const override { return std::make_unique<RandomProjection>(ratio_, k_); }

 private:
  static std::int64_t padded(std::int64_t d) { return d > 0 ? static_cast<std::int64_t>(std::bit_ceil(static_cast<std::uint64_t>(d))) : 0; }
  double ratio_;
  std::int64_t k_;
};

}  // namespace

void register_sketches(CompressorRegistry& r) {
  r.add(PluginSpec("count_sketch", "rows x columns count sketch with shared hashes; linear, top-k recovery")
            .integer("rows", 5, Range::between(1, 64), "hash rows")
            .integer("columns", 0, Range::at_least(0), "columns per row; overrides ratio when > 0")
            .number("ratio", 0.05, Range::above_until(0, 64), "rows x columns as a fraction of d")
            .number("recover", 0.01, Range::between(0, 1), "fraction of coordinates recovered (top-k of the estimate)")
            .with_traits(CompressorTraits{.linear = true}),
        [](Section& s, std::span<const TensorShape>) {
          const int rows = s.integer<int>("rows");
          const auto columns = s.integer("columns");
          const double ratio = s.number("ratio");
          return std::make_unique<CountSketch>(rows, columns, ratio, s.number("recover"));
        });
  r.add(PluginSpec("random_projection", "subsampled randomized Hadamard projection to k coordinates; only the seed travels")
            .number("ratio", 0.01, Range::above_until(0, 1), "k as a fraction of d")
            .integer("k", 0, Range::at_least(0), "projected coordinates; overrides ratio when > 0")
            .with_traits(CompressorTraits{.linear = true}),
        [](Section& s, std::span<const TensorShape>) {
          const double ratio = s.number("ratio");
          return std::make_unique<RandomProjection>(ratio, s.integer("k"));
        });
}

}  // namespace starling
