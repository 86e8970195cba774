#include "learning/gemm.h"

#include <cblas.h>

#include <mutex>
#include <stdexcept>

namespace starling {

namespace {
// TBB owns the parallelism: each GEMM runs in its caller's thread, so results do not depend on
// the thread count.
void one_blas_thread() {
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(1); });
}
}  // namespace

void gemm(Op op_a, const Eigen::Ref<const Matrix>& a, Op op_b, const Eigen::Ref<const Matrix>& b,
          Eigen::Ref<Matrix> c, bool accumulate) {
  one_blas_thread();
  const bool ta = op_a == Op::kTranspose, tb = op_b == Op::kTranspose;
  const Eigen::Index m = ta ? a.cols() : a.rows(), k = ta ? a.rows() : a.cols();
  const Eigen::Index kb = tb ? b.cols() : b.rows(), n = tb ? b.rows() : b.cols();
  if (k != kb || c.rows() != m || c.cols() != n) throw std::logic_error("gemm: operand shapes do not agree");
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (!accumulate) c.setZero();
    return;
  }
  // Leading dimensions must be >= 1 even for single-row operands.
  const auto ld = [](const auto& x) { return static_cast<int>(std::max<Eigen::Index>(1, x.outerStride())); };
  cblas_sgemm(CblasColMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(m),
              static_cast<int>(n), static_cast<int>(k), 1.0f, a.data(), ld(a), b.data(), ld(b), accumulate ? 1.0f : 0.0f,
              c.data(), ld(c));
}

}  // namespace starling
