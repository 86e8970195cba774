// In-memory datasets. The data is held once; clients refer to it by sample indices.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/registry.h"
#include "core/section.h"
#include "core/types.h"

namespace starling {

using ByteMatrix = Eigen::Matrix<std::uint8_t, Eigen::Dynamic, Eigen::Dynamic>;

// Features are stored one sample per column, either as floats (`x`) or, for 8-bit images, as
// bytes scaled by `byte_scale` (`bytes`): a quarter of the memory traffic when minibatches are
// gathered, which is what bounds training speed for small models.
struct Dataset {
  Matrix x;                      // float features (empty when `bytes` is used)
  ByteMatrix bytes;              // byte features; value = byte * byte_scale
  float byte_scale = 1.0f;
  std::vector<std::int32_t> y;   // labels in [0, num_classes)
  int num_classes = 0;

  std::int64_t size() const { return static_cast<std::int64_t>(y.size()); }
  std::int64_t num_features() const { return bytes.size() > 0 ? bytes.rows() : x.rows(); }
  // out = the features of samples indices[0], indices[1], ... as columns.
  void gather(std::span<const std::int32_t> indices, Matrix& out) const;
  // out = the features of samples begin .. begin + count - 1.
  void slice(Eigen::Index begin, Eigen::Index count, Matrix& out) const;
};

// Sample indices of the training set, one list per client.
using Partition = std::vector<std::vector<std::int32_t>>;

struct DataBundle {
  Dataset train;
  Dataset test;
  std::optional<Partition> natural;  // for datasets that come split by client (LEAF synthetic)
};

// Datasets by name: factory(data section, run seed, number of clients).
using DatasetRegistry = Registry<DataBundle, Section&, std::uint64_t, int>;
DatasetRegistry& dataset_registry();

// Fashion-MNIST from the four IDX (.gz) files in `dir`; pixels scaled to [0, 1].
DataBundle load_fashion_mnist(const std::string& dir);

struct SyntheticParams {
  double alpha = 1.0;     // spread of the per-client models
  double beta = 1.0;      // spread of the per-client feature means
  int dimension = 60;
  int classes = 10;
  int max_samples = 1000; // cap on LEAF's lognormal(4, 2) + 50 samples per client
  double test_fraction = 0.2;
};
// LEAF's Synthetic(alpha, beta): each client has its own softmax model and feature distribution;
// every client's samples are split train/test, and the natural partition is returned.
DataBundle make_synthetic(const SyntheticParams& params, int clients, std::uint64_t seed);

}  // namespace starling
