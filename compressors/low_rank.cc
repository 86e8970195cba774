// PowerSGD (Vogels, Karimireddy, Jaggi 2019): a rank-r approximation of each matrix-shaped
// tensor by one step of power iteration, warm-started from the previous message's Q.
#include <Eigen/QR>

#include "compressors/operators.h"
#include "compressors/wire.h"

namespace starling {

namespace {

// Per tensor M (rows x cols, column-major in the flat vector): P = M Q, orthonormalise P,
// Q = M^T P; send P (rows x r) and Q (cols x r); the receiver rebuilds P Q^T. Tensors for which
// that is not smaller (vectors, biases, r >= min(rows, cols)) travel as raw float32. Q is the
// sender's state: each message starts from the last one's Q (the paper's warm start), so the
// approximation improves over rounds on slowly changing updates. Biased: pair with feedback ef.
// Payload: the tensors in order, each as P then Q, or raw; no header (both ends know the shapes).
class PowerSgd final : public Compressor {
 public:
  PowerSgd(int rank, std::vector<TensorShape> tensors) : rank_(rank), tensors_(std::move(tensors)) {}

  Payload encode(const Vector& v, Rng& rng) override {
    require_finite(v, "powersgd");
    check_layout(v.size(), [](const std::string& why) { throw Error("powersgd compressor: " + why); });
    if (q_.empty()) q_.resize(tensors_.size());
    Payload out;
    ByteWriter w(out);
    for (std::size_t t = 0; t < tensors_.size(); ++t) {
      const TensorShape& s = tensors_[t];
      if (!low_rank(s)) {
        w.put_floats(v.data() + s.offset, static_cast<std::size_t>(s.size));
        continue;
      }
      const Eigen::Map<const Matrix> m(v.data() + s.offset, s.rows, s.cols);
      Matrix& q = q_[t];
      if (q.size() == 0) {  // first message: a Gaussian start, as in the paper
        q.resize(s.cols, rank_);
        for (Eigen::Index i = 0; i < q.size(); ++i) q.data()[i] = static_cast<float>(rng.normal());
      }
      Matrix p = m * q;
      orthonormalise_columns(p);
      q = m.transpose() * p;
      w.put_floats(p.data(), static_cast<std::size_t>(p.size()));
      w.put_floats(q.data(), static_cast<std::size_t>(q.size()));
    }
    return out;
  }

  Vector decode(const Payload& payload, std::int64_t d) override {
    ByteReader r(payload, "powersgd");
    check_layout(d, [&](const std::string& why) { r.fail(why); });
    Vector out(d);
    for (const TensorShape& s : tensors_) {
      if (!low_rank(s)) {
        r.get_floats(out.data() + s.offset, static_cast<std::size_t>(s.size));
        continue;
      }
      Matrix p(s.rows, rank_), q(s.cols, rank_);
      r.get_floats(p.data(), static_cast<std::size_t>(p.size()));
      r.get_floats(q.data(), static_cast<std::size_t>(q.size()));
      Eigen::Map<Matrix>(out.data() + s.offset, s.rows, s.cols).noalias() = p * q.transpose();
    }
    r.expect_end();
    return out;
  }

  std::unique_ptr<Compressor> clone() const override { return std::make_unique<PowerSgd>(rank_, tensors_); }

 private:
  bool low_rank(const TensorShape& s) const {
    return s.rows > 1 && s.cols > 1 && std::int64_t{rank_} * (s.rows + s.cols) < s.size;
  }
  // The tensors must tile the vector exactly; `fail` reports where they do not.
  template <typename Fail>
  void check_layout(std::int64_t d, Fail fail) const {
    std::int64_t next = 0;
    for (const TensorShape& s : tensors_) {
      if (s.offset != next || s.rows * s.cols != s.size) fail("the model's tensor shapes do not tile the vector");
      next += s.size;
    }
    if (next != d) fail("a vector of " + std::to_string(d) + " values for a model of " + std::to_string(next));
  }
  // Gram-Schmidt (twice, for stability in float); a column that vanishes stays zero.
  static void orthonormalise_columns(Matrix& p) {
    for (Eigen::Index j = 0; j < p.cols(); ++j) {
      for (int pass = 0; pass < 2; ++pass)
        for (Eigen::Index i = 0; i < j; ++i) p.col(j) -= p.col(i).dot(p.col(j)) * p.col(i);
      const float norm = p.col(j).norm();
      if (norm > 1e-12f) p.col(j) /= norm;
      else p.col(j).setZero();
    }
  }

  int rank_;
  std::vector<TensorShape> tensors_;
  std::vector<Matrix> q_;  // per tensor, this sender's warm start
};

}  // namespace

void register_low_rank(CompressorRegistry& r) {
  r.add(PluginSpec("powersgd", "rank-r power-iteration approximation of each weight matrix (warm-started); others dense")
            .integer("rank", 2, Range::between(1, 1 << 16), "rank r of each matrix's approximation")
            .with_traits(CompressorTraits{}),
        [](Section& s, std::span<const TensorShape> tensors) {
          const int rank = s.integer<int>("rank");
          if (tensors.empty())
            s.fail("kind", "powersgd needs the model's tensor shapes; it is built for a model's updates");
          return std::make_unique<PowerSgd>(rank, std::vector<TensorShape>(tensors.begin(), tensors.end()));
        });
}

}  // namespace starling
