// Partitioners: split training sample indices among clients, seeded and reproducible.
#pragma once
#include <memory>

#include "core/registry.h"
#include "core/rng.h"
#include "core/section.h"
#include "learning/dataset.h"

namespace starling {

class Partitioner {
 public:
  virtual ~Partitioner() = default;
  // Every sample index of `labels` lands with exactly one client.
  virtual Partition split(const std::vector<std::int32_t>& labels, int num_classes, int clients, Rng& rng) const = 0;
};

using PartitionerRegistry = Registry<Partitioner, Section&>;
PartitionerRegistry& partitioner_registry();

// Per-class Dirichlet(alpha) label split with the usual balancing rule (a client already above
// the average size receives no more), redrawn until every client has >= min_size samples.
Partition dirichlet_partition(const std::vector<std::int32_t>& labels, int num_classes, int clients, double alpha,
                              int min_size, Rng& rng);

// Reorders the samples of `data` so that each client's samples are adjacent, in partition
// order, and returns the partition rewritten for the new order. Minibatch gathers then touch a
// few neighbouring pages instead of pages all over the dataset.
Partition group_by_client(Dataset& data, const Partition& partition);

// Personalized evaluation data: `novel` clients (drawn from the seed) are held out of training
// entirely; every client's samples are split into a training part and a local test part of
// round(test_fraction x n) samples (at least 1 when test_fraction > 0, and never all of them).
// Both parts are sorted. The draws use the (seed, kLocalTest) stream.
struct LocalSplit {
  Partition train, test;              // the training clients, in client order
  Partition novel_train, novel_test;  // the novel clients
  std::vector<int> novel;             // their indices in the original partition, ascending
};
LocalSplit split_local(const Partition& partition, double test_fraction, int novel, std::uint64_t seed);

}  // namespace starling
