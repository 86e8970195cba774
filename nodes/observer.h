// RoundObserver: the measurement probe of decentralized protocols. Every node reports its model
// at the end of each round; when all have, the observer records the round's global metrics
// (accuracy of the average model, mean node accuracy, consensus distance, ...) and commits it.
// It sums the reports in node-id order, whatever order they arrive in, so a deployed run (reports
// relayed from many processes) records the simulator's values bit for bit.
#pragma once
#include <map>
#include <vector>

#include "nodes/probe.h"
#include "nodes/protocol.h"

namespace starling {

class RoundObserver final : public Probe {
 public:
  // `eval_nodes`: how many nodes' own models are evaluated for node_accuracy_mean (a fixed
  // sample drawn from the run seed; all when >= nodes). `excluded` (Byzantine) nodes report too,
  // but count in no metric: the metrics are those of the honest nodes, and so is the sample.
  RoundObserver(const LearningTask& task, int nodes, int rounds, int eval_every, int eval_nodes, std::uint64_t seed,
                const std::vector<NodeId>& excluded = {});

  // A metric recorded once, with round 1 (e.g. the spectral gap).
  void set_constant(std::string name, double value) { constants_.emplace_back(std::move(name), value); }
  // `hook` sees every observation as it is recorded, before the round's last one commits it (a
  // protocol's own extra measurement, e.g. zo_shared's replica divergence).
  void on_record(std::function<void(Context&, const Observation&)> hook) { hooks_.push_back(std::move(hook)); }

  // Node `id` finished `round` holding `model`, after local training with mean loss `train_loss`.
  void report(Context& ctx, int round, NodeId id, const Vector& model, double train_loss) {
    observe(ctx, Observation{round, id, model, {train_loss}});
  }

  void record(Context& ctx, Observation observation) override;

 private:
  struct Accumulator {
    Eigen::VectorXd sum;  // of the node models
    double squared_norms = 0.0, train_loss = 0.0, node_accuracy = 0.0;
    int evaluated = 0;
    NodeId next = 0;                        // nodes below it are summed
    std::map<NodeId, Observation> waiting;  // arrived before a node of lower id
  };
  bool evaluated_round(int round) const { return round % eval_every_ == 0 || round == rounds_; }
  void add(int round, Accumulator& acc, const Observation& o);
  void complete(Context& ctx, int round, Accumulator& acc);

  const LearningTask& task_;
  int nodes_, honest_, rounds_, eval_every_;
  std::vector<bool> sampled_, excluded_;
  std::vector<std::pair<std::string, double>> constants_;
  std::vector<std::function<void(Context&, const Observation&)>> hooks_;
  std::map<int, Accumulator> open_;
  std::vector<bool> recorded_;  // by round
};

}  // namespace starling
