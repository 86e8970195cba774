// Single-precision GEMM on Eigen column-major views, done by OpenBLAS.
// Why not Eigen's product: at training shapes (batch 32 x 784 x 10..200) OpenBLAS's kernels are
// about 2x faster (bench/RESULTS.md), and local training is GEMM-bound.
#pragma once
#include "core/types.h"

namespace starling {

enum class Op { kNone, kTranspose };

// c = op(a) * op(b) (beta = 0) or c += op(a) * op(b) (accumulate). `c` must already have the
// product's shape. Runs in the calling thread (OpenBLAS limited to one thread): TBB owns the
// parallelism, and every result is independent of the thread count. Safe to call concurrently.
void gemm(Op op_a, const Eigen::Ref<const Matrix>& a, Op op_b, const Eigen::Ref<const Matrix>& b,
          Eigen::Ref<Matrix> c, bool accumulate = false);

}  // namespace starling
