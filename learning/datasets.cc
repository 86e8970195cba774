#include <cmath>

#include "core/rng.h"
#include "learning/dataset.h"
#include "learning/idx.h"

namespace starling {

namespace {

Dataset images_to_dataset(const IdxArray& images, const IdxArray& labels, const std::string& images_path,
                          const std::string& labels_path) {
  if (images.dims.size() != 3) throw DataError(images_path + ": expected a 3-D image array (count, rows, columns)");
  if (labels.dims.size() != 1) throw DataError(labels_path + ": expected a 1-D label array");
  if (images.dims[0] != labels.dims[0])
    throw DataError(images_path + " has " + std::to_string(images.dims[0]) + " images but " + labels_path + " has " +
                    std::to_string(labels.dims[0]) + " labels; the files do not belong together");
  const Eigen::Index n = images.dims[0], d = Eigen::Index{images.dims[1]} * images.dims[2];
  Dataset ds;
  ds.bytes = Eigen::Map<const ByteMatrix>(images.data.data(), d, n);
  ds.byte_scale = 1.0f / 255.0f;  // pixels in [0, 1]
  ds.y.assign(labels.data.begin(), labels.data.end());
  ds.num_classes = 10;
  for (auto label : ds.y)
    if (label >= ds.num_classes) throw DataError(labels_path + ": label " + std::to_string(label) + " is not in 0..9");
  return ds;
}

Dataset load_split(const std::string& dir, const std::string& stem) {
  const std::string images = dir + "/" + stem + "-images-idx3-ubyte.gz";
  const std::string labels = dir + "/" + stem + "-labels-idx1-ubyte.gz";
  return images_to_dataset(read_idx(images), read_idx(labels), images, labels);
}

}  // namespace

void Dataset::gather(std::span<const std::int32_t> indices, Matrix& out) const {
  out.resize(num_features(), static_cast<Eigen::Index>(indices.size()));
  // Samples sit at random places in a large array: fetching a few columns ahead keeps several
  // memory requests in flight instead of waiting on each column in turn.
  constexpr std::size_t kAhead = 4;
  const auto prefetch = [&](std::size_t j) {
    const char* begin = bytes.size() > 0 ? reinterpret_cast<const char*>(bytes.col(indices[j]).data())
                                         : reinterpret_cast<const char*>(x.col(indices[j]).data());
    const std::size_t length = static_cast<std::size_t>(num_features()) * (bytes.size() > 0 ? 1 : sizeof(float));
    for (std::size_t offset = 0; offset < length; offset += 64) __builtin_prefetch(begin + offset);
  };
  for (std::size_t j = 0; j < std::min(kAhead, indices.size()); ++j) prefetch(j);
  for (std::size_t j = 0; j < indices.size(); ++j) {
    if (j + kAhead < indices.size()) prefetch(j + kAhead);
    const auto col = static_cast<Eigen::Index>(j);
    if (bytes.size() > 0) out.col(col) = bytes.col(indices[j]).cast<float>() * byte_scale;
    else out.col(col) = x.col(indices[j]);
  }
}

void Dataset::slice(Eigen::Index begin, Eigen::Index count, Matrix& out) const {
  if (bytes.size() > 0) out = bytes.middleCols(begin, count).cast<float>() * byte_scale;
  else out = x.middleCols(begin, count);
}

DataBundle load_fashion_mnist(const std::string& dir) {
  DataBundle b;
  b.train = load_split(dir, "train");
  b.test = load_split(dir, "t10k");
  if (b.train.num_features() != b.test.num_features())
    throw DataError(dir + ": train and test images have different sizes");
  return b;
}

DataBundle make_synthetic(const SyntheticParams& p, int clients, std::uint64_t seed) {
  const int d = p.dimension, c = p.classes;
  Eigen::VectorXd sigma_sqrt(d);  // diagonal covariance j^-1.2
  for (int j = 0; j < d; ++j) sigma_sqrt[j] = std::sqrt(std::pow(j + 1.0, -1.2));
  std::vector<Eigen::VectorXf> xs;
  std::vector<std::int32_t> ys;
  std::vector<int> owner;
  std::vector<bool> is_test;
  for (int k = 0; k < clients; ++k) {
    Rng rng(seed, k, Purpose::kSynthetic);
    const int n = std::min(static_cast<int>(rng.lognormal(4.0, 2.0)) + 50, std::max(p.max_samples, 2));
    const double u = rng.normal(0.0, std::sqrt(p.alpha)), big_b = rng.normal(0.0, std::sqrt(p.beta));
    Eigen::MatrixXd w(c, d);
    Eigen::VectorXd bias(c), v(d);
    for (int j = 0; j < d; ++j) v[j] = rng.normal(big_b, 1.0);
    for (Eigen::Index i = 0; i < w.size(); ++i) w.data()[i] = rng.normal(u, 1.0);
    for (int i = 0; i < c; ++i) bias[i] = rng.normal(u, 1.0);
    const int n_test = std::max(1, static_cast<int>(std::lround(n * p.test_fraction)));
    for (int s = 0; s < n; ++s) {
      Eigen::VectorXd x(d);
      for (int j = 0; j < d; ++j) x[j] = v[j] + sigma_sqrt[j] * rng.normal();
      Eigen::Index label;
      (w * x + bias).maxCoeff(&label);  // argmax of softmax = argmax of logits
      xs.push_back(x.cast<float>());
      ys.push_back(static_cast<std::int32_t>(label));
      owner.push_back(k);
      is_test.push_back(s < n_test);
    }
  }
  DataBundle b;
  b.natural.emplace(static_cast<std::size_t>(clients));
  std::int64_t n_test = 0;
  for (bool t : is_test) n_test += t;
  const auto n_train = static_cast<std::int64_t>(xs.size()) - n_test;
  b.train.x.resize(d, n_train);
  b.test.x.resize(d, n_test);
  b.train.num_classes = b.test.num_classes = c;
  for (std::size_t i = 0; i < xs.size(); ++i) {
    Dataset& ds = is_test[i] ? b.test : b.train;
    const auto col = static_cast<Eigen::Index>(ds.y.size());
    ds.x.col(col) = xs[i];
    ds.y.push_back(ys[i]);
    if (!is_test[i]) (*b.natural)[static_cast<std::size_t>(owner[i])].push_back(static_cast<std::int32_t>(col));
  }
  return b;
}

DatasetRegistry& dataset_registry() {
  static DatasetRegistry registry = [] {
    DatasetRegistry r("dataset");
    r.add(PluginSpec("fashion_mnist", "Fashion-MNIST (60k/10k 28x28 images, 10 classes) from IDX files")
              .text("path", "/usr/share/datasets/fashion-mnist", "folder of the four IDX files (gzipped or not)"),
          [](Section& data, std::uint64_t, int) { return std::make_unique<DataBundle>(load_fashion_mnist(data.text("path"))); });
    const SyntheticParams d;
    r.add(PluginSpec("synthetic", "LEAF Synthetic(alpha, beta): per-client softmax models, natural partition")
              .number("alpha", d.alpha, Range::at_least(0), "spread of the per-client models")
              .number("beta", d.beta, Range::at_least(0), "spread of the per-client feature means")
              .integer("dimension", d.dimension, Range::between(1, 100000), "features")
              .integer("classes", d.classes, Range::between(2, 100000), "classes")
              .integer("max_samples", d.max_samples, Range::at_least(2), "cap on LEAF's lognormal(4, 2) + 50 samples per client")
              .number("test_fraction", d.test_fraction, Range::above_until(0, 0.9), "of each client's samples, held out for the test set"),
          [](Section& data, std::uint64_t seed, int clients) {
            SyntheticParams p;
            p.alpha = data.number("alpha");
            p.beta = data.number("beta");
            p.dimension = data.integer<int>("dimension");
            p.classes = data.integer<int>("classes");
            p.max_samples = data.integer<int>("max_samples");
            p.test_fraction = data.number("test_fraction");
            return std::make_unique<DataBundle>(make_synthetic(p, clients, seed));
          });
    return r;
  }();
  return registry;
}

}  // namespace starling
