#include "learning/partition.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace starling {

namespace {

std::vector<std::int32_t> all_indices(std::size_t n) {
  std::vector<std::int32_t> v(n);
  std::iota(v.begin(), v.end(), 0);
  return v;
}

class IidPartitioner final : public Partitioner {
 public:
  Partition split(const std::vector<std::int32_t>& labels, int, int clients, Rng& rng) const override {
    auto idx = all_indices(labels.size());
    rng.shuffle(std::span(idx));
    Partition out(static_cast<std::size_t>(clients));
    for (std::size_t i = 0; i < idx.size(); ++i) out[i % out.size()].push_back(idx[i]);
    return out;
  }
};

class DirichletPartitioner final : public Partitioner {
 public:
  DirichletPartitioner(double alpha, int min_size) : alpha_(alpha), min_size_(min_size) {}
  Partition split(const std::vector<std::int32_t>& labels, int num_classes, int clients, Rng& rng) const override {
    return dirichlet_partition(labels, num_classes, clients, alpha_, min_size_, rng);
  }

 private:
  double alpha_;
  int min_size_;
};

// McMahan et al.'s pathological split: sort by label, cut into equal shards, deal them out.
class ShardsPartitioner final : public Partitioner {
 public:
  explicit ShardsPartitioner(int shards_per_client) : per_client_(shards_per_client) {}
  Partition split(const std::vector<std::int32_t>& labels, int, int clients, Rng& rng) const override {
    auto idx = all_indices(labels.size());
    rng.shuffle(std::span(idx));  // random order within a label
    std::stable_sort(idx.begin(), idx.end(), [&](auto a, auto b) { return labels[a] < labels[b]; });
    const std::int64_t shards = std::int64_t{clients} * per_client_;
    if (shards > static_cast<std::int64_t>(idx.size()))
      throw ConfigError("data.partition.shards_per_client", std::to_string(per_client_) +
                                                                " shards per client need more samples than the dataset has");
    auto order = rng.sample_without_replacement(static_cast<std::int32_t>(shards), static_cast<std::int32_t>(shards));
    Partition out(static_cast<std::size_t>(clients));
    for (std::int64_t s = 0; s < shards; ++s) {
      const auto shard = order[static_cast<std::size_t>(s)];
      const std::size_t begin = idx.size() * shard / shards, end = idx.size() * (shard + 1) / shards;
      auto& dst = out[static_cast<std::size_t>(s / per_client_)];
      dst.insert(dst.end(), idx.begin() + static_cast<std::ptrdiff_t>(begin), idx.begin() + static_cast<std::ptrdiff_t>(end));
    }
    return out;
  }

 private:
  int per_client_;
};

}  // namespace

Partition dirichlet_partition(const std::vector<std::int32_t>& labels, int num_classes, int clients, double alpha,
                              int min_size, Rng& rng) {
  const double n = static_cast<double>(labels.size());
  if (std::int64_t{min_size} * clients > static_cast<std::int64_t>(labels.size()))
    throw ConfigError("data.partition.min_size", std::to_string(min_size) + " samples for each of " +
                                                     std::to_string(clients) + " clients exceeds the dataset size");
  std::vector<std::vector<std::int32_t>> by_class(static_cast<std::size_t>(num_classes));
  for (std::size_t i = 0; i < labels.size(); ++i) by_class[static_cast<std::size_t>(labels[i])].push_back(static_cast<std::int32_t>(i));
  constexpr int kMaxTries = 10000;
  for (int attempt = 0; attempt < kMaxTries; ++attempt) {
    Partition out(static_cast<std::size_t>(clients));
    for (auto cls : by_class) {
      rng.shuffle(std::span(cls));
      auto p = rng.dirichlet(alpha, clients);
      double sum = 0.0;
      for (int j = 0; j < clients; ++j) {
        if (static_cast<double>(out[j].size()) >= n / clients) p[j] = 0.0;  // already has its share
        sum += p[j];
      }
      std::size_t start = 0;
      double cumulative = 0.0;
      for (int j = 0; j < clients; ++j) {
        cumulative += sum > 0 ? p[j] / sum : 1.0 / clients;
        const std::size_t end = j + 1 == clients ? cls.size() : std::min(cls.size(), static_cast<std::size_t>(cumulative * cls.size()));
        out[j].insert(out[j].end(), cls.begin() + static_cast<std::ptrdiff_t>(start), cls.begin() + static_cast<std::ptrdiff_t>(std::max(start, end)));
        start = std::max(start, end);
      }
    }
    const auto smallest = std::min_element(out.begin(), out.end(), [](auto& a, auto& b) { return a.size() < b.size(); })->size();
    if (static_cast<int>(smallest) >= min_size) {
      for (auto& part : out) rng.shuffle(std::span(part));
      return out;
    }
  }
  throw ConfigError("data.partition.alpha", "no Dirichlet split with at least " + std::to_string(min_size) +
                                                " samples per client after " + std::to_string(kMaxTries) +
                                                " draws; raise alpha or lower data.partition.min_size");
}

Partition group_by_client(Dataset& data, const Partition& partition) {
  std::vector<std::int32_t> order;
  order.reserve(static_cast<std::size_t>(data.size()));
  Partition grouped(partition.size());
  for (std::size_t c = 0; c < partition.size(); ++c)
    for (auto i : partition[c]) {
      grouped[c].push_back(static_cast<std::int32_t>(order.size()));
      order.push_back(i);
    }
  Dataset out;
  out.num_classes = data.num_classes;
  out.byte_scale = data.byte_scale;
  const auto n = static_cast<Eigen::Index>(order.size());
  if (data.bytes.size() > 0) out.bytes.resize(data.bytes.rows(), n);
  else out.x.resize(data.x.rows(), n);
  out.y.resize(order.size());
  for (Eigen::Index j = 0; j < n; ++j) {
    const auto i = order[static_cast<std::size_t>(j)];
    if (data.bytes.size() > 0) out.bytes.col(j) = data.bytes.col(i);
    else out.x.col(j) = data.x.col(i);
    out.y[static_cast<std::size_t>(j)] = data.y[static_cast<std::size_t>(i)];
  }
  data = std::move(out);
  return grouped;
}

PartitionerRegistry& partitioner_registry() {
  static PartitionerRegistry registry = [] {
    PartitionerRegistry r("partitioner");
    r.add("iid", "uniformly random, equal sizes", [](Section&) { return std::make_unique<IidPartitioner>(); });
    r.add(PluginSpec("dirichlet", "per-class Dirichlet(alpha) label skew")
              .number("alpha", 0.5, Range::above_until(0, 1e6), "concentration: small is skewed, large is near iid")
              .integer("min_size", 10, Range::at_least(0), "redraw until every client has at least this many samples"),
          [](Section& s) {
            const double alpha = s.number("alpha");
            const int min_size = s.integer<int>("min_size");
            return std::make_unique<DirichletPartitioner>(alpha, min_size);
          });
    r.add(PluginSpec("shards", "sort by label, deal out shards_per_client shards each")
              .integer("shards_per_client", 2, Range::between(1, 1 << 20), "label-sorted shards per client"),
          [](Section& s) { return std::make_unique<ShardsPartitioner>(s.integer<int>("shards_per_client")); });
    return r;
  }();
  return registry;
}

LocalSplit split_local(const Partition& partition, double test_fraction, int novel, std::uint64_t seed) {
  const int clients = static_cast<int>(partition.size());
  LocalSplit out;
  const Rng root(seed, kNoNode, Purpose::kLocalTest);
  Rng pick = root;
  auto chosen = pick.sample_without_replacement(clients, novel);
  out.novel.assign(chosen.begin(), chosen.end());
  std::sort(out.novel.begin(), out.novel.end());
  for (int c = 0; c < clients; ++c) {
    std::vector<std::int32_t> samples = partition[static_cast<std::size_t>(c)];
    const auto n = static_cast<std::int64_t>(samples.size());
    std::int64_t test = 0;
    if (test_fraction > 0 && n >= 2) test = std::clamp<std::int64_t>(std::llround(test_fraction * static_cast<double>(n)), 1, n - 1);
    Rng rng = root.substream(static_cast<std::uint64_t>(c) + 1);
    rng.shuffle(std::span(samples));
    std::vector<std::int32_t> held(samples.begin(), samples.begin() + test), kept(samples.begin() + test, samples.end());
    std::sort(held.begin(), held.end());
    std::sort(kept.begin(), kept.end());
    const bool is_novel = std::binary_search(out.novel.begin(), out.novel.end(), c);
    (is_novel ? out.novel_train : out.train).push_back(std::move(kept));
    (is_novel ? out.novel_test : out.test).push_back(std::move(held));
  }
  return out;
}

}  // namespace starling
