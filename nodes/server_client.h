// The client of the server-based protocols (FedAvg, SCAFFOLD, FedAMD and the asynchronous
// servers): on each model it trains locally as one compute job, then sends back its encoded update.
// A model arriving while it still trains waits (the newest one only) and is trained on once the
// update is out.
#pragma once
#include "nodes/protocol.h"

namespace starling {

struct LocalWork {
  std::int64_t steps = 0;      // minibatches per trip; 0 = train.local_epochs epochs
  std::int64_t max_steps = 0;  // > 0: each trip draws its steps uniformly in [steps, max_steps] (AFA)
  bool per_step = false;       // send the update divided by the steps taken (AFA's lr x mean gradient)
  bool scaffold = false;       // models arrive as [x; c], updates leave as [y - x; c_i+ - c_i]
  // FedAMD (card 8.1): a kModel message carries [x; v_glob] and the client runs `steps` SARAH
  // steps (train_sarah) and sends y - x; a kAnchor message carries x and the client sends the
  // mean gradient at x over anchor_batch samples of its partition (0 or more than it has: all).
  bool fedamd = false;
  std::int64_t anchor_batch = 0;
};

// SCAFFOLD option II: the client's new control c_i+ = c_i - c + (x - y) / (K lr), from the
// global model x, the model y after K local steps of size lr, and the global control c.
Vector scaffold_client_control(const Vector& c_i, const Vector& c, const Vector& x, const Vector& y,
                               std::int64_t steps, double lr);
// [a; b] as one vector: SCAFFOLD's messages carry two model-sized vectors in one payload.
Vector concat(const Vector& a, const Vector& b);

// What every synchronous server records at the end of `round`, before it commits the round:
// participants, train_loss, and (every eval_every rounds and after the last) the test_accuracy
// and test_loss of `model`.
void record_server_round(Context& ctx, const LearningTask& task, const Vector& model, int round, int rounds,
                         int eval_every, double participants, double train_loss);

// network.noise_std: adds N(0, std^2) from `rng` to every coordinate of a decoded payload
// vector (nothing, and no draw, when std is 0).
void add_link_noise(Vector& v, double std, Rng& rng);

// Training samples of each client, in client order (what samplers weigh by).
std::vector<std::int64_t> client_sizes(const LearningTask& task);

// The client nodes of a star: entry 0 (the server) is left empty for the caller. Throws
// ConfigError naming topology.kind unless the topology is the star with node 0 at its centre.
NodeSet make_star_clients(const std::string& protocol, ProtocolParts& parts, const LocalWork& work);

}  // namespace starling
