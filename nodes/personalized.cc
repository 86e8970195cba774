#include "nodes/personalized.h"

#include <tbb/parallel_for.h>

#include <limits>

namespace starling {

void finetune(const LearningTask& task, std::span<const std::int32_t> indices, int steps, std::uint64_t seed,
              NodeId node, int round, Vector& params) {
  if (steps <= 0 || indices.empty()) return;
  Rng shuffle = Rng(seed, node, Purpose::kLocalTest).substream(static_cast<std::uint64_t>(round));
  auto optimizer = task.optimizer->clone();
  train_local(*task.model, *optimizer, *task.train, indices, std::numeric_limits<int>::max(), task.batch_size,
              shuffle, params, steps);
}

namespace {

class FineTunedModels final : public PersonalModels {
 public:
  FineTunedModels(const LearningTask& task, std::uint64_t seed) : task_(task), seed_(seed) {}

  EvalCounts evaluate_client(int client, const Vector& global, int round) const override {
    const auto c = static_cast<std::size_t>(client);
    return score(task_.partition[c], task_.local_test[c], client + 1, global, round);
  }
  EvalCounts evaluate_novel(int k, const Vector& global, int round) const override {
    const auto i = static_cast<std::size_t>(k);
    return score(task_.novel_train[i], task_.novel_test[i], static_cast<NodeId>(task_.partition.size()) + 1 + k, global,
                 round);
  }

 private:
  EvalCounts score(std::span<const std::int32_t> train, std::span<const std::int32_t> test, NodeId node,
                   const Vector& global, int round) const {
    if (task_.finetune_steps == 0) return evaluate_indices(*task_.model, global, *task_.train, test, task_.batch_size);
    Vector params = global;
    finetune(task_, train, task_.finetune_steps, seed_, node, round, params);
    return evaluate_indices(*task_.model, params, *task_.train, test, task_.batch_size);
  }

  const LearningTask& task_;
  std::uint64_t seed_;
};

// Scores `count` clients with `score(i)` in parallel and adds their counts in index order.
template <typename Score>
EvalCounts score_all(std::size_t count, Score score) {
  std::vector<EvalCounts> counts(count);
  tbb::parallel_for(std::size_t{0}, count, std::size_t{1}, [&](std::size_t i) { counts[i] = score(i); });
  EvalCounts total;
  for (const auto& c : counts) total.add(c);
  return total;
}

}  // namespace

std::shared_ptr<PersonalModels> make_finetuned_models(const LearningTask& task, std::uint64_t seed) {
  return std::make_shared<FineTunedModels>(task, seed);
}

void record_personalized(Context& ctx, int round, const LearningTask& task, const PersonalModels& models,
                         const Vector& global) {
  auto& sink = ctx.metrics();
  const SimTime t = ctx.now();
  const EvalCounts own = score_all(task.local_test.size(), [&](std::size_t c) {
    return models.evaluate_client(static_cast<int>(c), global, round);
  });
  sink.metric(round, t, kNoNode, "personalized_accuracy", own.accuracy());
  sink.metric(round, t, kNoNode, "personalized_loss", own.loss());
  if (task.novel_test.empty()) return;
  const EvalCounts novel = score_all(task.novel_test.size(), [&](std::size_t k) {
    return models.evaluate_novel(static_cast<int>(k), global, round);
  });
  sink.metric(round, t, kNoNode, "novel_accuracy", novel.accuracy());
  sink.metric(round, t, kNoNode, "novel_loss", novel.loss());
}

}  // namespace starling
