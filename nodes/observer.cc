#include "nodes/observer.h"

#include <algorithm>

#include "learning/training.h"

namespace starling {

RoundObserver::RoundObserver(const LearningTask& task, int nodes, int rounds, int eval_every, int eval_nodes,
                             std::uint64_t seed, const std::vector<NodeId>& excluded)
    : task_(task), nodes_(nodes), rounds_(rounds), eval_every_(eval_every), sampled_(static_cast<std::size_t>(nodes)),
      excluded_(static_cast<std::size_t>(nodes)), recorded_(static_cast<std::size_t>(rounds) + 1) {
  for (NodeId i : excluded) excluded_[static_cast<std::size_t>(i)] = true;
  std::vector<NodeId> honest;  // without exclusions, sample k is node k: the same draw as before
  for (NodeId i = 0; i < nodes; ++i)
    if (!excluded_[static_cast<std::size_t>(i)]) honest.push_back(i);
  honest_ = static_cast<int>(honest.size());
  Rng rng(seed, kNoNode, Purpose::kEvaluation);
  for (auto k : rng.sample_without_replacement(honest_, std::min(eval_nodes, honest_)))
    sampled_[static_cast<std::size_t>(honest[static_cast<std::size_t>(k)])] = true;
}

void RoundObserver::record(Context& ctx, Observation o) {
  const auto where = "node " + std::to_string(o.node) + ", round " + std::to_string(o.round);
  if (o.node < 0 || o.node >= nodes_ || o.round < 1 || o.round > rounds_)
    throw Error("round observer: an observation of " + where + ", outside the run");
  if (o.model.size() != task_.model->num_params() || o.values.size() != 1)
    throw Error("round observer: the observation of " + where + " holds " + std::to_string(o.model.size()) +
                " parameters and " + std::to_string(o.values.size()) + " values; the run's model has " +
                std::to_string(task_.model->num_params()) + " (and one value, the train loss)");
  if (recorded_[static_cast<std::size_t>(o.round)]) throw Error("round observer: " + where + " came after the round was recorded");
  Accumulator& acc = open_[o.round];
  if (o.node < acc.next || acc.waiting.count(o.node)) throw Error("round observer: " + where + " observed twice");
  for (const auto& hook : hooks_) hook(ctx, o);
  const int round = o.round;
  acc.waiting.emplace(o.node, std::move(o));
  while (!acc.waiting.empty() && acc.waiting.begin()->first == acc.next) {
    add(round, acc, acc.waiting.begin()->second);
    acc.waiting.erase(acc.waiting.begin());
    ++acc.next;
  }
  if (acc.next == nodes_) {
    complete(ctx, round, acc);
    open_.erase(round);
    recorded_[static_cast<std::size_t>(round)] = true;
  }
}

void RoundObserver::add(int round, Accumulator& acc, const Observation& o) {
  if (excluded_[static_cast<std::size_t>(o.node)]) return;
  const Eigen::VectorXd model = o.model.cast<double>();
  if (acc.sum.size() == 0) acc.sum = Eigen::VectorXd::Zero(model.size());
  acc.sum += model;
  acc.squared_norms += model.squaredNorm();
  acc.train_loss += o.values[0];
  if (evaluated_round(round) && sampled_[static_cast<std::size_t>(o.node)]) {
    acc.node_accuracy += evaluate(*task_.model, o.model, *task_.test).accuracy;
    ++acc.evaluated;
  }
}

void RoundObserver::complete(Context& ctx, int round, Accumulator& acc) {
  const Eigen::VectorXd mean = acc.sum / honest_;
  auto& sink = ctx.metrics();
  const SimTime t = ctx.now();
  if (round == 1)
    for (const auto& [name, value] : constants_) sink.metric(round, t, kNoNode, name, value);
  sink.metric(round, t, kNoNode, "participants", nodes_);
  sink.metric(round, t, kNoNode, "train_loss", acc.train_loss / honest_);
  // Mean squared distance to the average: mean ||x_i||^2 - ||mean||^2 (sums kept in double).
  sink.metric(round, t, kNoNode, "consensus_distance", std::max(0.0, acc.squared_norms / honest_ - mean.squaredNorm()));
  if (evaluated_round(round)) {
    const auto eval = evaluate(*task_.model, mean.cast<float>(), *task_.test);
    sink.metric(round, t, kNoNode, "test_accuracy", eval.accuracy);
    sink.metric(round, t, kNoNode, "test_loss", eval.loss);
    sink.metric(round, t, kNoNode, "node_accuracy_mean", acc.node_accuracy / std::max(acc.evaluated, 1));
  }
  ctx.finish_round(round);
  if (round == rounds_) ctx.stop();
}

}  // namespace starling
