// Counter-based random streams.
//
// Every random choice in a run draws from a stream keyed by (run seed, node id, purpose). The
// value at position i of a stream is a pure function mix(key, i), so streams never share state:
// adding a node, a purpose or a draw in one stream never shifts another. Distributions are our
// own code (std::*_distribution output differs between standard libraries).
#pragma once
#include <cstdint>
#include <map>
#include <span>
#include <vector>

#include "core/types.h"

namespace starling {

// What a stream is used for. Append new purposes at the end; values are part of the key.
enum class Purpose : std::uint32_t {
  kModelInit = 1,
  kDataShuffle = 2,
  kPartition = 3,
  kSampling = 4,
  kComputeSpeed = 5,
  kNetwork = 6,
  kCompression = 7,
  kSynthetic = 8,
  kTopology = 9,
  kEvaluation = 10,
  kChurn = 11,
  kPerturbation = 12,  // zeroth-order directions z (card 5), substreams per iteration and sample
  kLocalSteps = 13,    // clients that choose their own number of local steps (AFA, card 8.2)
  kAttack = 14,        // who the Byzantine clients are; their noise (substreams per node and round)
  kAnchor = 16,        // FedAMD (card 8.1): which sampled clients are anchors; anchors' large batches
  kAvailability = 18,  // Markov on/off durations of each node
  kDropout = 19,       // whether a node's finished compute job is lost (one draw per job)
  kLinkNoise = 20,     // network.noise_std: Gaussian noise added to received payload vectors
  kClientProfile = 21, // per-node link bandwidths drawn from a distribution
  kBudget = 23,        // pFedGate: each client's sparsity budget s_i drawn from a distribution
  kGateInit = 24,      // pFedGate: a client's initial gating layer
  kLocalTest = 25,     // personalized evaluation: local test splits, novel clients, fine-tuning shuffles
  kTest = 1000,
};

class Rng {
 public:
  // The stream for `purpose` of `node` in the run seeded by `seed`.
  Rng(std::uint64_t seed, NodeId node, Purpose purpose);
  // A sub-stream of this one (e.g. one per round), still independent of all others.
  Rng substream(std::uint64_t index) const;

  std::uint64_t next_u64();
  // Uniform in [0, 1) with 53 random bits.
  double uniform();
  // Uniform integer in [0, n), unbiased (Lemire's multiply-and-reject).
  std::uint64_t below(std::uint64_t n);
  double normal();  // standard normal (Marsaglia polar method)
  double normal(double mean, double stddev) { return mean + stddev * normal(); }
  double lognormal(double mu, double sigma);
  double exponential(double rate);
  double gamma(double shape);  // Marsaglia-Tsang, scale 1
  // A point of the simplex drawn from Dirichlet(alpha, ..., alpha) of dimension k.
  std::vector<double> dirichlet(double alpha, int k);

  template <typename T>
  void shuffle(std::span<T> items) {  // Fisher-Yates
    for (std::size_t i = items.size(); i > 1; --i) std::swap(items[i - 1], items[below(i)]);
  }
  // k distinct values of [0, n), in the order drawn (partial Fisher-Yates).
  std::vector<std::int32_t> sample_without_replacement(std::int32_t n, std::int32_t k);

  std::uint64_t key() const { return key_; }
  std::uint64_t position() const { return counter_; }

 private:
  explicit Rng(std::uint64_t key) : key_(key) {}
  std::uint64_t key_;
  std::uint64_t counter_ = 0;
};

// The streams of one node, each created on first use. Every runtime (simulated or deployed) hands
// its nodes their streams through this class, so a node draws the same numbers wherever it runs.
class NodeStreams {
 public:
  NodeStreams(std::uint64_t seed, NodeId node) : seed_(seed), node_(node) {}
  Rng& get(Purpose purpose) { return streams_.try_emplace(purpose, seed_, node_, purpose).first->second; }

 private:
  std::uint64_t seed_;
  NodeId node_;
  std::map<Purpose, Rng> streams_;  // a map: references stay valid as streams are added
};

// SplitMix64's finaliser: a bijective 64-bit mixer, the core of the counter-based generator.
std::uint64_t mix64(std::uint64_t x);

}  // namespace starling
