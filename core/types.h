// Basic vocabulary shared by every layer.
#pragma once
#include <Eigen/Core>
#include <cstdint>

namespace starling {

// A model, an update, a gradient: always one flat float vector.
using Vector = Eigen::VectorXf;
// Column-major float matrix; a batch of samples is one column per sample.
using Matrix = Eigen::MatrixXf;

// One parameter tensor of a flat model vector: `size` floats from `offset`, viewed as a
// column-major rows x cols matrix (a bias is a single column).
struct TensorShape {
  std::int64_t offset = 0, size = 0, rows = 0, cols = 1;
};

using NodeId = std::int32_t;
inline constexpr NodeId kNoNode = -1;

// Virtual time: integer nanoseconds, so event order never depends on float rounding.
using SimTime = std::int64_t;
inline constexpr SimTime kNanosPerSecond = 1'000'000'000;
inline double to_seconds(SimTime t) { return static_cast<double>(t) / kNanosPerSecond; }
inline SimTime from_seconds(double s) { return static_cast<SimTime>(s * kNanosPerSecond + 0.5); }

}  // namespace starling
