// Personalized evaluation: every client scores its own model on its own local test split
// (data.local_test_fraction); novel clients (data.novel_clients), held out of training, are scored
// the same way. A measurement probe, like the decentralized round observer: it reads the clients'
// state the way a monitoring process would, charges no bytes and takes no virtual time.
#pragma once
#include <memory>

#include "learning/training.h"
#include "nodes/context.h"
#include "nodes/protocol.h"

namespace starling {

// What a protocol's clients use as their own model at evaluation time.
class PersonalModels {
 public:
  virtual ~PersonalModels() = default;
  // Training client `client` scores its own model, built from the global model `global`, on
  // `test`. Called concurrently for different clients: it may touch only that client's state.
  virtual EvalCounts evaluate_client(int client, const Vector& global, int round) const = 0;
  // The same for novel client `k` (no state of its own: it starts from `global` every time).
  virtual EvalCounts evaluate_novel(int k, const Vector& global, int round) const = 0;
};

// FedAvg's clients (also SCAFFOLD's): the global model, or, with eval.finetune_steps N > 0, the
// global model after N minibatch steps of train.optimizer on the client's own training samples
// (an evaluation-only copy; training is unchanged). Shuffles come from the (seed, node,
// kLocalTest) stream's substream `round`.
std::shared_ptr<PersonalModels> make_finetuned_models(const LearningTask& task, std::uint64_t seed);

// `steps` minibatches of SGD from `params` on `indices` of task.train (batch_size, optimizer of
// the task), shuffled by the (seed, node, kLocalTest) substream `round`: FedAvg's fine-tuning.
void finetune(const LearningTask& task, std::span<const std::int32_t> indices, int steps, std::uint64_t seed,
              NodeId node, int round, Vector& params);

// Records personalized_accuracy and personalized_loss (sample-weighted over the training clients'
// local test splits), and with novel clients novel_accuracy and novel_loss. Clients are scored in
// parallel; their counts are added in client order, so the values do not depend on the threads.
void record_personalized(Context& ctx, int round, const LearningTask& task, const PersonalModels& models,
                         const Vector& global);

}  // namespace starling
