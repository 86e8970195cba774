// learning/: IDX files, datasets, partitioners, models, optimizers, training.
#include <gtest/gtest.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <tuple>
#include <cmath>
#include <fstream>
#include <limits>
#include <numeric>
#include <set>
#include <thread>

#include "core/error.h"
#include "learning/dataset.h"
#include "learning/gemm.h"
#include "learning/idx.h"
#include "learning/model.h"
#include "learning/optimizer.h"
#include "learning/partition.h"
#include "learning/training.h"
#include "learning/variance_correction.h"
#include "test_util.h"

namespace starling {
namespace {

using test::TempDir;

// ---------------------------------------------------------------- IDX reader

std::vector<std::uint8_t> idx_bytes(const std::vector<std::uint32_t>& dims, const std::vector<std::uint8_t>& data,
                                    std::uint8_t type = 0x08) {
  std::vector<std::uint8_t> out{0, 0, type, static_cast<std::uint8_t>(dims.size())};
  for (auto d : dims)
    for (int shift : {24, 16, 8, 0}) out.push_back(static_cast<std::uint8_t>(d >> shift));
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

void write_plain(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

void write_gzip(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
}

std::vector<std::uint8_t> ramp(std::size_t n) {
  std::vector<std::uint8_t> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::uint8_t>((i * 37 + 11) % 256);
  return v;
}

// Expects read_idx(path) to throw a DataError whose message names the file and contains `what`.
void expect_data_error(const std::string& path, const std::string& what) {
  try {
    read_idx(path);
    FAIL() << "expected a DataError for " << path;
  } catch (const DataError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find(what), std::string::npos) << msg;
  }
}

TEST(Idx, ReadsPlainFile) {
  TempDir dir;
  const auto data = ramp(3 * 4 * 5);
  write_plain(dir.file("a.idx"), idx_bytes({3, 4, 5}, data));
  const IdxArray a = read_idx(dir.file("a.idx"));
  EXPECT_EQ(a.dims, (std::vector<std::uint32_t>{3, 4, 5}));
  EXPECT_EQ(a.data, data);
}

TEST(Idx, ReadsGzipFile) {
  TempDir dir;
  const auto data = ramp(300);
  write_gzip(dir.file("a.idx.gz"), idx_bytes({300}, data));
  const IdxArray a = read_idx(dir.file("a.idx.gz"));
  EXPECT_EQ(a.dims, (std::vector<std::uint32_t>{300}));
  EXPECT_EQ(a.data, data);
  // Dimensions above 255 exercise the big-endian decoding.
  const auto big = ramp(2 * 700);
  write_gzip(dir.file("b.idx.gz"), idx_bytes({2, 700}, big));
  const IdxArray b = read_idx(dir.file("b.idx.gz"));
  EXPECT_EQ(b.dims, (std::vector<std::uint32_t>{2, 700}));
  EXPECT_EQ(b.data, big);
}

TEST(Idx, TruncatedFileNamesThePath) {
  TempDir dir;
  auto bytes = idx_bytes({4, 5}, ramp(20));
  bytes.resize(bytes.size() - 3);
  write_plain(dir.file("short.idx"), bytes);
  expect_data_error(dir.file("short.idx"), "truncated");
  write_gzip(dir.file("short.idx.gz"), bytes);
  expect_data_error(dir.file("short.idx.gz"), "truncated");
  write_plain(dir.file("header_only.idx"), {0, 0, 8});
  expect_data_error(dir.file("header_only.idx"), "truncated");
  auto dims_cut = idx_bytes({4, 5}, {});
  dims_cut.resize(6);
  write_plain(dir.file("dims_cut.idx"), dims_cut);
  expect_data_error(dir.file("dims_cut.idx"), "truncated");
}

TEST(Idx, BadMagicNamesThePath) {
  TempDir dir;
  auto bytes = idx_bytes({2, 2}, ramp(4));
  bytes[0] = 0x1f;
  write_plain(dir.file("bad.idx"), bytes);
  expect_data_error(dir.file("bad.idx"), "magic");
  write_gzip(dir.file("bad.idx.gz"), bytes);
  expect_data_error(dir.file("bad.idx.gz"), "magic");
}

TEST(Idx, OtherCorruptionIsReported) {
  TempDir dir;
  write_plain(dir.file("float.idx"), idx_bytes({2}, ramp(8), 0x0d));  // float elements
  expect_data_error(dir.file("float.idx"), "type");
  write_plain(dir.file("zero_dims.idx"), idx_bytes({}, {}));
  expect_data_error(dir.file("zero_dims.idx"), "dimensions");
  auto trailing = idx_bytes({3}, ramp(3));
  trailing.push_back(0);
  write_plain(dir.file("trailing.idx"), trailing);
  expect_data_error(dir.file("trailing.idx"), "trailing");
  expect_data_error(dir.file("missing.idx"), "cannot open");
}

// All features of a dataset as floats, one sample per column.
Matrix features(const Dataset& d) {
  Matrix m;
  d.slice(0, d.size(), m);
  return m;
}

TEST(FashionMnist, LoadsTinyFilesAndScalesPixels) {
  TempDir dir;
  // 3 training images of 2x2, 2 test images.
  write_gzip(dir.file("train-images-idx3-ubyte.gz"), idx_bytes({3, 2, 2}, {0, 255, 51, 102, 1, 2, 3, 4, 5, 6, 7, 8}));
  write_gzip(dir.file("train-labels-idx1-ubyte.gz"), idx_bytes({3}, {9, 0, 4}));
  write_gzip(dir.file("t10k-images-idx3-ubyte.gz"), idx_bytes({2, 2, 2}, ramp(8)));
  write_gzip(dir.file("t10k-labels-idx1-ubyte.gz"), idx_bytes({2}, {1, 2}));
  const DataBundle b = load_fashion_mnist(dir.path().string());
  EXPECT_EQ(b.train.size(), 3);
  EXPECT_EQ(b.train.num_features(), 4);
  EXPECT_EQ(b.train.num_classes, 10);
  EXPECT_EQ(b.train.y, (std::vector<std::int32_t>{9, 0, 4}));
  const Matrix x = features(b.train);
  ASSERT_EQ(x.rows(), 4);
  ASSERT_EQ(x.cols(), 3);
  EXPECT_FLOAT_EQ(x(0, 0), 0.0f);
  EXPECT_FLOAT_EQ(x(1, 0), 1.0f);
  EXPECT_FLOAT_EQ(x(2, 0), 0.2f);
  EXPECT_FLOAT_EQ(x(3, 2), 8.0f / 255.0f);
  Matrix picked;
  const std::vector<std::int32_t> which = {2, 0};
  b.train.gather(which, picked);
  EXPECT_TRUE(picked.col(0) == x.col(2));
  EXPECT_TRUE(picked.col(1) == x.col(0));
  EXPECT_EQ(b.test.size(), 2);

  // Labels that do not match the image count, and labels out of range, are data errors.
  write_gzip(dir.file("t10k-labels-idx1-ubyte.gz"), idx_bytes({3}, {1, 2, 3}));
  EXPECT_THROW(load_fashion_mnist(dir.path().string()), DataError);
  write_gzip(dir.file("t10k-labels-idx1-ubyte.gz"), idx_bytes({2}, {1, 12}));
  EXPECT_THROW(load_fashion_mnist(dir.path().string()), DataError);
}

// ---------------------------------------------------------------- Synthetic data

TEST(Synthetic, IsDeterministicAndNaturallyPartitioned) {
  SyntheticParams p;
  p.max_samples = 200;
  const DataBundle a = make_synthetic(p, 8, 11);
  const DataBundle b = make_synthetic(p, 8, 11);
  const DataBundle c = make_synthetic(p, 8, 12);
  ASSERT_TRUE(a.natural.has_value());
  EXPECT_EQ(a.train.y, b.train.y);
  const Matrix xa = features(a.train), xc = features(c.train);
  EXPECT_TRUE(xa == features(b.train));
  EXPECT_EQ(*a.natural, *b.natural);
  EXPECT_FALSE(xa.rows() == xc.rows() && xa.cols() == xc.cols() && xa == xc);
  EXPECT_EQ(a.train.num_features(), 60);
  EXPECT_EQ(a.train.num_classes, 10);
  ASSERT_EQ(a.natural->size(), 8u);
  std::vector<int> seen(static_cast<std::size_t>(a.train.size()), 0);
  for (const auto& part : *a.natural) {
    EXPECT_FALSE(part.empty());
    EXPECT_LE(part.size(), 200u);
    for (auto i : part) ++seen[static_cast<std::size_t>(i)];
  }
  EXPECT_TRUE(std::all_of(seen.begin(), seen.end(), [](int s) { return s == 1; }));
  for (auto y : a.train.y) {
    EXPECT_GE(y, 0);
    EXPECT_LT(y, 10);
  }
  const double test_share = static_cast<double>(a.test.size()) / static_cast<double>(a.test.size() + a.train.size());
  EXPECT_NEAR(test_share, 0.2, 0.03);
}

TEST(Synthetic, AddingClientsKeepsExistingClientsData) {
  SyntheticParams p;
  p.max_samples = 100;
  const DataBundle small = make_synthetic(p, 3, 5);
  const DataBundle large = make_synthetic(p, 6, 5);
  const Matrix xs = features(small.train), xl = features(large.train);
  for (std::size_t k = 0; k < 3; ++k) {
    const auto& a = (*small.natural)[k];
    const auto& b = (*large.natural)[k];
    ASSERT_EQ(a.size(), b.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(small.train.y[static_cast<std::size_t>(a[i])], large.train.y[static_cast<std::size_t>(b[i])]);
      EXPECT_TRUE(xs.col(a[i]) == xl.col(b[i]));
    }
  }
}

// ---------------------------------------------------------------- Partitioners

// A partitioner built the way config/ builds it: from data.partition of a YAML document.
std::unique_ptr<Partitioner> make_partitioner(const std::string& partition_yaml) {
  Section root(YAML::Load("data: {partition: " + partition_yaml + "}"));
  Section data = root.child("data");
  Section partition = data.child("partition");
  const auto kind = partition.get<std::string>("kind", "iid");
  auto p = partitioner_registry().create(kind, partition.path("kind"), partition);
  root.reject_unknown_keys();
  return p;
}

// `per_class` samples of each of `classes` labels, in a scrambled order.
std::vector<std::int32_t> make_labels(int classes, int per_class) {
  std::vector<std::int32_t> labels;
  for (int c = 0; c < classes; ++c)
    for (int i = 0; i < per_class; ++i) labels.push_back(c);
  Rng rng(1, 0, Purpose::kTest);
  rng.shuffle(std::span(labels));
  return labels;
}

void expect_exact_cover(const Partition& p, std::size_t n, int clients) {
  ASSERT_EQ(p.size(), static_cast<std::size_t>(clients));
  std::vector<int> seen(n, 0);
  std::size_t total = 0;
  for (const auto& part : p) {
    total += part.size();
    for (auto i : part) {
      ASSERT_GE(i, 0);
      ASSERT_LT(static_cast<std::size_t>(i), n);
      ++seen[static_cast<std::size_t>(i)];
    }
  }
  EXPECT_EQ(total, n);
  for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(seen[i], 1) << "sample " << i;
}

// Mean over clients of the largest share one class has in the client's data.
double mean_max_class_fraction(const Partition& p, const std::vector<std::int32_t>& labels, int classes) {
  double total = 0.0;
  int counted = 0;
  for (const auto& part : p) {
    if (part.empty()) continue;
    std::vector<int> counts(static_cast<std::size_t>(classes), 0);
    for (auto i : part) ++counts[static_cast<std::size_t>(labels[static_cast<std::size_t>(i)])];
    total += *std::max_element(counts.begin(), counts.end()) / static_cast<double>(part.size());
    ++counted;
  }
  return total / counted;
}

TEST(Partition, EveryKindCoversEverySampleExactlyOnce) {
  const auto labels = make_labels(10, 300);
  for (const std::string spec : {"{kind: iid}", "{kind: dirichlet, alpha: 0.1}", "{kind: dirichlet, alpha: 0.5}",
                                 "{kind: dirichlet, alpha: 100}", "{kind: shards, shards_per_client: 2}",
                                 "{kind: shards, shards_per_client: 3}"}) {
    for (int clients : {1, 7, 30}) {
      SCOPED_TRACE(spec + " clients " + std::to_string(clients));
      Rng rng(3, kNoNode, Purpose::kPartition);
      expect_exact_cover(make_partitioner(spec)->split(labels, 10, clients, rng), labels.size(), clients);
    }
  }
}

TEST(Partition, IidSizesDifferByAtMostOne) {
  const auto labels = make_labels(10, 101);
  Rng rng(3, kNoNode, Purpose::kPartition);
  const auto p = make_partitioner("{kind: iid}")->split(labels, 10, 13, rng);
  std::size_t lo = SIZE_MAX, hi = 0;
  for (const auto& part : p) lo = std::min(lo, part.size()), hi = std::max(hi, part.size());
  EXPECT_LE(hi - lo, 1u);
  EXPECT_LT(mean_max_class_fraction(p, labels, 10), 0.3);
}

TEST(Partition, DirichletSkewGrowsAsAlphaFalls) {
  const auto labels = make_labels(10, 500);
  auto skew = [&](const std::string& alpha) {
    Rng rng(4, kNoNode, Purpose::kPartition);
    return mean_max_class_fraction(make_partitioner("{kind: dirichlet, alpha: " + alpha + "}")->split(labels, 10, 20, rng),
                                   labels, 10);
  };
  const double s01 = skew("0.1"), s1 = skew("1"), s10 = skew("10");
  EXPECT_GT(s01, s1);
  EXPECT_GT(s1, s10);
  EXPECT_GT(s01, s10 + 0.25) << "alpha 0.1: " << s01 << ", alpha 10: " << s10;
  EXPECT_LT(s10, 0.3);
}

TEST(Partition, DirichletRespectsMinSize) {
  const auto labels = make_labels(10, 200);
  for (int min_size : {0, 10, 30}) {
    Rng rng(5, kNoNode, Purpose::kPartition);
    const auto p = make_partitioner("{kind: dirichlet, alpha: 0.1, min_size: " + std::to_string(min_size) + "}")
                       ->split(labels, 10, 25, rng);
    expect_exact_cover(p, labels.size(), 25);
    for (const auto& part : p) EXPECT_GE(static_cast<int>(part.size()), min_size);
  }
  // Impossible: 25 clients x 100 samples > 2000 samples.
  Rng rng(5, kNoNode, Purpose::kPartition);
  EXPECT_THROW(make_partitioner("{kind: dirichlet, alpha: 0.1, min_size: 100}")->split(labels, 10, 25, rng), ConfigError);
}

TEST(Partition, SameSeedSamePartitionOtherSeedOther) {
  const auto labels = make_labels(10, 100);
  for (const std::string spec : {"{kind: iid}", "{kind: dirichlet, alpha: 0.3}", "{kind: shards}"}) {
    SCOPED_TRACE(spec);
    auto part = make_partitioner(spec);
    Rng a(8, kNoNode, Purpose::kPartition), b(8, kNoNode, Purpose::kPartition), c(9, kNoNode, Purpose::kPartition);
    const auto pa = part->split(labels, 10, 10, a);
    EXPECT_EQ(pa, part->split(labels, 10, 10, b));
    EXPECT_NE(pa, part->split(labels, 10, 10, c));
  }
}

TEST(Partition, ShardsGiveFewClassesPerClient) {
  const auto labels = make_labels(10, 100);  // 1000 samples, 40 shards of 25: one class each
  Rng rng(6, kNoNode, Purpose::kPartition);
  const auto p = make_partitioner("{kind: shards, shards_per_client: 2}")->split(labels, 10, 20, rng);
  for (const auto& part : p) {
    EXPECT_EQ(part.size(), 50u);
    std::set<std::int32_t> classes;
    for (auto i : part) classes.insert(labels[static_cast<std::size_t>(i)]);
    EXPECT_LE(classes.size(), 2u);
  }
  Rng rng2(6, kNoNode, Purpose::kPartition);
  EXPECT_THROW(make_partitioner("{kind: shards, shards_per_client: 100}")->split(labels, 10, 20, rng2), ConfigError);
}

TEST(Partition, BadParametersAreConfigErrors) {
  EXPECT_THROW(make_partitioner("{kind: dirichlet, alpha: 0}"), ConfigError);
  EXPECT_THROW(make_partitioner("{kind: dirichlet, alpha: -1}"), ConfigError);
  EXPECT_THROW(make_partitioner("{kind: shards, shards_per_client: 0}"), ConfigError);
  EXPECT_THROW(make_partitioner("{kind: iid, alpha: 0.5}"), ConfigError);  // unknown key for iid
  try {
    make_partitioner("{kind: dirichlett}");
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.key_path(), "data.partition.kind");
    EXPECT_NE(std::string(e.what()).find("known: dirichlet, iid, shards"), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------- Models

struct Problem {
  Matrix x;
  std::vector<std::int32_t> y;
};

Problem random_problem(int features, int classes, int batch, std::uint64_t seed) {
  Rng rng(seed, 0, Purpose::kTest);
  Problem p{Matrix(features, batch), {}};
  for (Eigen::Index i = 0; i < p.x.size(); ++i) p.x.data()[i] = static_cast<float>(rng.normal());
  for (int j = 0; j < batch; ++j) p.y.push_back(static_cast<std::int32_t>(rng.below(static_cast<std::uint64_t>(classes))));
  return p;
}

// Smallest |pre-activation| of any hidden unit (how close the batch is to a ReLU kink).
float min_hidden_margin(const Mlp& model, const Vector& params, const Matrix& x) {
  Workspace ws;
  model.logits(params, x, ws);
  float m = std::numeric_limits<float>::infinity();
  for (std::size_t l = 0; l + 1 < ws.z.size(); ++l) m = std::min(m, ws.z[l].cwiseAbs().minCoeff());
  return m;
}

// Compares the analytic gradient with central differences at every coordinate.
void check_gradient(const Mlp& model, const Vector& params, const Problem& prob) {
  Workspace ws;
  Vector grad;
  model.loss_and_gradient(params, prob.x, prob.y, grad, ws);
  ASSERT_EQ(grad.size(), model.num_params());
  Vector scratch;
  int checked = 0;
  for (Eigen::Index i = 0; i < params.size(); ++i) {
    Vector plus = params, minus = params;
    plus[i] += 1e-2f;
    minus[i] -= 1e-2f;
    const double step = static_cast<double>(plus[i]) - static_cast<double>(minus[i]);  // the exact float step
    const double lp = model.loss_and_gradient(plus, prob.x, prob.y, scratch, ws);
    const double lm = model.loss_and_gradient(minus, prob.x, prob.y, scratch, ws);
    const double fd = (lp - lm) / step;
    const double g = grad[i];
    const double scale = std::max(std::abs(fd), std::abs(g));
    if (scale > 1e-3) {
      EXPECT_LT(std::abs(fd - g) / scale, 1e-2) << "coordinate " << i << ": analytic " << g << ", numeric " << fd;
      ++checked;
    } else {
      EXPECT_LT(std::abs(fd - g), 2e-4) << "coordinate " << i << ": analytic " << g << ", numeric " << fd;
    }
  }
  EXPECT_GT(checked, params.size() / 2) << "too few coordinates with a measurable gradient";
}

TEST(Mlp, ParameterCounts) {
  EXPECT_EQ(Mlp(784, {}, 10).num_params(), 7850);
  EXPECT_EQ(Mlp(784, {200, 200}, 10).num_params(), 784 * 200 + 200 + 200 * 200 + 200 + 200 * 10 + 10);
  EXPECT_EQ(Mlp(6, {5, 4}, 3).num_params(), 6 * 5 + 5 + 5 * 4 + 4 + 4 * 3 + 3);
}

TEST(Mlp, LogregGradientMatchesFiniteDifferences) {
  const Mlp model(6, {}, 4);
  const Problem prob = random_problem(6, 4, 8, 21);
  Rng rng(21, 0, Purpose::kModelInit);
  Vector params = model.init(rng) * 3.0f;  // larger weights: a less uniform softmax
  check_gradient(model, params, prob);
}

TEST(Mlp, HiddenLayerGradientMatchesFiniteDifferences) {
  const Mlp model(6, {5, 4}, 3);
  // Find a draw whose hidden pre-activations all stay clear of the ReLU kink at 0, so that the
  // +-0.01 perturbations (each moves a pre-activation by far less than 0.05) never cross it.
  for (std::uint64_t seed = 1; seed < 500; ++seed) {
    const Problem prob = random_problem(6, 3, 4, seed);
    Rng rng(seed, 0, Purpose::kModelInit);
    const Vector params = model.init(rng) * 2.0f;
    if (min_hidden_margin(model, params, prob.x) < 0.08f) continue;
    SCOPED_TRACE("seed " + std::to_string(seed));
    check_gradient(model, params, prob);
    return;
  }
  FAIL() << "no draw kept every hidden pre-activation away from the ReLU kink";
}

TEST(Mlp, InitIsDeterministicAndBounded) {
  const Mlp model(20, {7}, 3);
  Rng a(1, kNoNode, Purpose::kModelInit), b(1, kNoNode, Purpose::kModelInit), c(2, kNoNode, Purpose::kModelInit);
  const Vector pa = model.init(a);
  EXPECT_TRUE(pa == model.init(b));
  EXPECT_FALSE(pa == model.init(c));
  ASSERT_EQ(pa.size(), model.num_params());
  // First layer (7 x 20 weights + 7 biases): fan-in 20; second layer: fan-in 7.
  const float b1 = 1.0f / std::sqrt(20.0f), b2 = 1.0f / std::sqrt(7.0f);
  EXPECT_LE(pa.head(7 * 20 + 7).cwiseAbs().maxCoeff(), b1);
  EXPECT_LE(pa.tail(3 * 7 + 3).cwiseAbs().maxCoeff(), b2);
  EXPECT_GT(pa.tail(3 * 7 + 3).cwiseAbs().maxCoeff(), b1);  // the second layer really uses its own bound
  EXPECT_NEAR(pa.head(147).mean(), 0.0, 0.05);
}

TEST(Mlp, ZeroWeightsGiveSoftmaxOfBiases) {
  // With every weight zero the logits are the biases (the last `classes` parameters), whatever
  // the input, and the loss is the cross-entropy of softmax(bias).
  const Mlp model(3, {}, 3);
  Vector p = Vector::Zero(model.num_params());
  p.tail(3) << 0.5f, -0.5f, 2.0f;
  Matrix x(3, 4);
  x << 1, -2, 3, 0.5, 4, 0, -1, 2, 7, 1, 1, -3;
  const std::vector<std::int32_t> y = {0, 2, 2, 1};
  Workspace ws;
  const Matrix& z = model.logits(p, x, ws);
  EXPECT_EQ(z.size(), 4 * 3);
  EXPECT_FLOAT_EQ(z.sum(), 4 * (0.5f - 0.5f + 2.0f));
  const double lse = std::log(std::exp(0.5) + std::exp(-0.5) + std::exp(2.0));
  const double expected = (4 * lse - 0.5 - 2.0 - 2.0 + 0.5) / 4;
  Vector grad;
  EXPECT_NEAR(model.loss_and_gradient(p, x, y, grad, ws), expected, 1e-6);
  // d loss / d bias_c = mean over the batch of softmax_c - [y == c].
  const double sm[3] = {std::exp(0.5 - lse), std::exp(-0.5 - lse), std::exp(2.0 - lse)};
  const double share[3] = {0.25, 0.25, 0.5};  // label frequencies
  for (int c = 0; c < 3; ++c) EXPECT_NEAR(grad[model.num_params() - 3 + c], sm[c] - share[c], 1e-6) << "class " << c;
}

// Two well separated blobs: class 0 around (-2, -2), class 1 around (+2, +2).
Dataset separable(int per_class, std::uint64_t seed) {
  Rng rng(seed, 0, Purpose::kTest);
  Dataset d;
  d.num_classes = 2;
  d.x.resize(2, 2 * per_class);
  for (int i = 0; i < 2 * per_class; ++i) {
    const int label = i % 2;
    const float c = label ? 2.0f : -2.0f;
    d.x(0, i) = c + 0.5f * static_cast<float>(rng.normal());
    d.x(1, i) = c + 0.5f * static_cast<float>(rng.normal());
    d.y.push_back(label);
  }
  return d;
}

TEST(Training, SgdDecreasesLossOnSeparableProblem) {
  const Dataset data = separable(50, 3);
  std::vector<std::int32_t> all(100);
  std::iota(all.begin(), all.end(), 0);
  for (const auto& hidden : {std::vector<int>{}, std::vector<int>{8}}) {
    const Mlp model(2, hidden, 2);
    Rng init(3, kNoNode, Purpose::kModelInit);
    Vector params = model.init(init);
    const EvalResult before = evaluate(model, params, data);
    Sgd sgd(0.1, 0.0, 0.0);
    Rng shuffle(3, 0, Purpose::kDataShuffle);
    const TrainStats stats = train_local(model, sgd, data, all, 20, 10, shuffle, params);
    EXPECT_EQ(stats.samples, 20 * 100);
    const EvalResult after = evaluate(model, params, data);
    EXPECT_LT(after.loss, 0.5 * before.loss) << "hidden layers: " << hidden.size();
    EXPECT_LT(after.loss, 0.1);
    EXPECT_GE(after.accuracy, 0.98);
    EXPECT_LT(stats.mean_loss, before.loss);
  }
}

TEST(Training, TrainLocalIsDeterministicAndUsesTheRng) {
  const Dataset data = separable(40, 4);
  std::vector<std::int32_t> idx(80);
  std::iota(idx.begin(), idx.end(), 0);
  const Mlp model(2, {4}, 2);
  auto run = [&](std::uint64_t seed) {
    Rng init(1, kNoNode, Purpose::kModelInit);
    Vector p = model.init(init);
    Sgd sgd(0.05, 0.9, 0.0);
    Rng shuffle(seed, 0, Purpose::kDataShuffle);
    train_local(model, sgd, data, idx, 2, 7, shuffle, p);
    return p;
  };
  EXPECT_TRUE(run(1) == run(1));
  EXPECT_FALSE(run(1) == run(2));  // a different shuffle order gives a different model
  Vector untouched(3);
  untouched << 1, 2, 3;
  Sgd sgd(0.1, 0, 0);
  Rng rng(1, 0, Purpose::kTest);
  EXPECT_EQ(train_local(model, sgd, data, {}, 1, 8, rng, untouched).samples, 0);
}

TEST(Training, ProximalTermHoldsTheModelNearTheAnchor) {
  const Dataset data = separable(40, 5);
  std::vector<std::int32_t> idx(80);
  std::iota(idx.begin(), idx.end(), 0);
  const Mlp model(2, {4}, 2);
  Rng init(2, kNoNode, Purpose::kModelInit);
  const Vector anchor = model.init(init);
  auto train = [&](const GradientTerms& terms) {
    Vector p = anchor;
    Sgd sgd(0.1, 0.0, 0.0);
    Rng shuffle(9, 0, Purpose::kDataShuffle);
    const TrainStats stats = train_local(model, sgd, data, idx, 3, 8, shuffle, p, 0, terms);
    EXPECT_EQ(stats.batches, 30);
    return p;
  };
  const Vector plain = train({});
  EXPECT_TRUE(train({.prox_mu = 0.0f, .anchor = &anchor}) == plain) << "mu = 0 must not change a bit";
  // lr * mu = 1: each step restarts from the anchor, so the model stays one gradient step away.
  const Vector held = train({.prox_mu = 10.0f, .anchor = &anchor});
  EXPECT_LT((held - anchor).norm(), 0.2f * (plain - anchor).norm());
  EXPECT_GT((held - anchor).norm(), 0.0f);
}

TEST(Training, EvaluateCountsCorrectPredictions) {
  const Mlp model(1, {}, 2);
  Vector p(4);
  p << 1, -1, 0, 0;  // logit0 = x, logit1 = -x: class 0 iff x > 0
  Dataset d;
  d.num_classes = 2;
  d.x.resize(1, 1200);  // more than one evaluation chunk
  for (int i = 0; i < 1200; ++i) {
    d.x(0, i) = (i % 3 == 0) ? 1.0f : -1.0f;
    d.y.push_back(i % 4 == 0 ? 0 : 1);
  }
  int correct = 0;
  for (int i = 0; i < 1200; ++i) correct += (d.x(0, i) > 0 ? 0 : 1) == d.y[static_cast<std::size_t>(i)];
  const EvalResult r = evaluate(model, p, d);
  EXPECT_DOUBLE_EQ(r.accuracy, correct / 1200.0);
  const double l_right = std::log1p(std::exp(-2.0)), l_wrong = std::log1p(std::exp(2.0));
  EXPECT_NEAR(r.loss, (correct * l_right + (1200 - correct) * l_wrong) / 1200.0, 1e-5);
}

TEST(ModelRegistry, BuildsFromSections) {
  Section root(YAML::Load("model: {kind: mlp, hidden: [16, 8]}"));
  Section s = root.child("model");
  auto m = model_registry().create("mlp", "model.kind", s, 10, 3);
  EXPECT_EQ(m->num_params(), 10 * 16 + 16 + 16 * 8 + 8 + 8 * 3 + 3);
  Section bad_root(YAML::Load("model: {hidden: [16, 0]}"));
  Section bad = bad_root.child("model");
  EXPECT_THROW(model_registry().create("mlp", "model.kind", bad, 10, 3), ConfigError);
  EXPECT_THROW(model_registry().create("cnnn", "model.kind", bad, 10, 3), ConfigError);
}

// ---------------------------------------------------------------- Optimizer

Vector vec(std::initializer_list<float> v) {
  Vector out(static_cast<Eigen::Index>(v.size()));
  Eigen::Index i = 0;
  for (float x : v) out[i++] = x;
  return out;
}

TEST(Sgd, PlainStepIsParamsMinusLrTimesGrad) {
  Sgd sgd(0.1, 0.0, 0.0);
  const Vector p0 = vec({1.0f, -2.0f, 0.5f, 3.25f}), g = vec({0.3f, 0.7f, -1.5f, 0.0f});
  Vector p = p0, grad = g;
  sgd.step(p, grad);
  for (Eigen::Index i = 0; i < p.size(); ++i) EXPECT_FLOAT_EQ(p[i], p0[i] - 0.1f * g[i]);
}

TEST(Sgd, MomentumAndWeightDecayMatchPyTorchOverTwoSteps) {
  const double lr = 0.05, mu = 0.9, wd = 0.01;
  Sgd sgd(lr, mu, wd);
  const Vector p0 = vec({1.0f, -2.0f, 0.5f}), g1 = vec({0.3f, 0.7f, -1.5f}), g2 = vec({-0.2f, 0.1f, 0.4f});
  Vector p = p0, grad = g1;
  sgd.step(p, grad);
  const Vector p1 = p;
  grad = g2;
  sgd.step(p, grad);
  for (Eigen::Index i = 0; i < p.size(); ++i) {
    // torch.optim.SGD: d = g + wd * p; buf = d (first step) else mu * buf + d; p -= lr * buf.
    const double d1 = g1[i] + wd * p0[i];
    const double buf1 = d1;
    const double e1 = p0[i] - lr * buf1;
    const double d2 = g2[i] + wd * e1;
    const double buf2 = mu * buf1 + d2;
    const double e2 = e1 - lr * buf2;
    EXPECT_NEAR(p1[i], e1, 1e-6) << i;
    EXPECT_NEAR(p[i], e2, 1e-6) << i;
  }
}

TEST(Sgd, CloneStartsWithEmptyState) {
  Sgd sgd(0.1, 0.9, 0.0);
  Vector p = vec({1.0f}), g = vec({1.0f});
  sgd.step(p, g);
  g = vec({1.0f});
  sgd.step(p, g);  // momentum buffer now 1.9
  auto fresh = sgd.clone();
  Vector q = vec({1.0f}), h = vec({1.0f});
  fresh->step(q, h);
  EXPECT_FLOAT_EQ(q[0], 0.9f);  // first step of a fresh optimizer: buf = g
  EXPECT_NEAR(p[0], 1.0f - 0.1f - 0.19f, 1e-6);
}

TEST(Sgd, RegistryReadsTrainSection) {
  Section root(YAML::Load("train: {lr: 0.5, momentum: 0.5, weight_decay: 0.1}"));
  Section train = root.child("train");
  auto opt = optimizer_registry().create("sgd", "train.optimizer", train);
  Vector p = vec({2.0f}), g = vec({1.0f});
  opt->step(p, g);
  EXPECT_NEAR(p[0], 2.0f - 0.5f * (1.0f + 0.1f * 2.0f), 1e-6);
  Section bad_root(YAML::Load("train: {momentum: 1.5}"));
  Section bad = bad_root.child("train");
  EXPECT_THROW(optimizer_registry().create("sgd", "train.optimizer", bad), ConfigError);
}


TEST(VarianceCorrection, RestoresTheReceivedModelsVarianceAndKeepsTheMean) {
  const Mlp model(20, {10}, 3);  // tensors: 20x10, 10, 10x3, 3
  Rng rng(4, 0, Purpose::kTest);
  std::vector<Vector> models;
  for (int k = 0; k < 8; ++k) {
    Vector v(model.num_params());
    for (auto& x : v) x = static_cast<float>(rng.normal(0.0, 0.5));
    models.push_back(v);
  }
  Vector mixed = Vector::Zero(model.num_params());
  for (const auto& m : models) mixed += m / 8.0f;
  const auto tensors = model.tensors();
  ASSERT_EQ(tensors.size(), 4u);
  const auto var = [](const Eigen::Ref<const Vector>& v) {
    return (v.cast<double>().array() - v.cast<double>().mean()).square().mean();
  };
  const auto& w1 = tensors[0];
  EXPECT_LT(var(mixed.segment(w1.offset, w1.size)), 0.25 / 4);  // averaging shrank it ~8x
  const Vector before = mixed;
  std::vector<const Vector*> views;
  for (const auto& m : models) views.push_back(&m);
  correct_variance(mixed, views, tensors, 0.0);
  for (const auto& t : tensors) {
    double target = 0.0;
    for (const auto& m : models) target += var(m.segment(t.offset, t.size)) / 8.0;
    EXPECT_NEAR(var(mixed.segment(t.offset, t.size)), target, 1e-5 * target + 1e-7);
    EXPECT_NEAR(mixed.segment(t.offset, t.size).mean(), before.segment(t.offset, t.size).mean(), 1e-5);
  }
  // One-element tensors are left alone.
  const Mlp tiny(1, {}, 1);
  Vector one = Vector::Constant(2, 3.0f), other = Vector::Constant(2, -1.0f);
  std::vector<const Vector*> v1{&other};
  correct_variance(one, v1, tiny.tensors());
  EXPECT_EQ(one, Vector::Constant(2, 3.0f));
}

TEST(Gemm, MatchesEigenInEveryTransposeAndIsSafeToCallConcurrently) {
  Rng rng(3, 0, Purpose::kTest);
  const auto random = [&](Eigen::Index r, Eigen::Index c) {
    Matrix m(r, c);
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<float>(rng.normal());
    return m;
  };
  const Matrix a = random(32, 784), b = random(784, 200), bt = b.transpose(), at = a.transpose();
  const Matrix expected = a * b;
  for (const auto& [op_a, x, op_b, y] : {std::tuple{Op::kNone, &a, Op::kNone, &b}, std::tuple{Op::kTranspose, &at, Op::kNone, &b},
                                         std::tuple{Op::kNone, &a, Op::kTranspose, &bt}, std::tuple{Op::kTranspose, &at, Op::kTranspose, &bt}}) {
    Matrix c(32, 200);
    gemm(op_a, *x, op_b, *y, c);
    EXPECT_LT((c - expected).norm(), 1e-4 * expected.norm());
    gemm(op_a, *x, op_b, *y, c, true);  // accumulate
    EXPECT_LT((c - 2 * expected).norm(), 2e-4 * expected.norm());
  }
  Matrix wrong(3, 3);
  EXPECT_THROW(gemm(Op::kNone, a, Op::kNone, b, wrong), std::logic_error);
  // Compute jobs call gemm from several threads at once; OpenBLAS's serial build gets this wrong a
  // few times in thousands of calls at these shapes (its buffers are shared), the pthread build
  // kept to one thread does not.
  Matrix reference(32, 200);
  gemm(Op::kNone, a, Op::kNone, b, reference);
  std::atomic<int> mismatches{0};
  const auto work = [&] {
    Matrix c(32, 200);
    for (int r = 0; r < 1500; ++r) {
      gemm(Op::kNone, a, Op::kNone, b, c);
      if (c != reference) ++mismatches;
    }
  };
  std::thread t1(work), t2(work), t3(work);
  t1.join(), t2.join(), t3.join();
  EXPECT_EQ(mismatches.load(), 0);
}

}  // namespace
}  // namespace starling
