// The client of the server-based protocols (FedAvg, SCAFFOLD, FedAMD and the asynchronous
// servers): on each model it trains locally as one compute job, then sends back its encoded update.
// A model arriving while it still trains waits (the newest one only) and is trained on once the
// update is out.
#pragma once
#include <functional>
#include <utility>

#include "nodes/personalized.h"
#include "nodes/protocol.h"

namespace starling {

// The control-variate protocols that run on FedAvg's server and clients: models travel down as
// [x; c], and each client keeps its own control c_i (0 at first).
enum class Controls {
  kNone,
  kScaffold,  // card 9.3 option II: up go C(y - x) and C(c_i+ - c_i), two vectors
  kScallion,  // card 7.8: up goes one vector, C(g - c_i), g the client's mean corrected-step gradient
  kScafcom,   // card 7.8: up goes C(v - c_i) with momentum v <- (1 - beta) v + beta g
};

struct LocalWork {
  std::int64_t steps = 0;      // minibatches per trip; 0 = train.local_epochs epochs
  std::int64_t max_steps = 0;  // > 0: each trip draws its steps uniformly in [steps, max_steps] (AFA)
  bool per_step = false;       // send the update divided by the steps taken (AFA's lr x mean gradient)
  Controls controls = Controls::kNone;
  double alpha = 1.0;  // scallion, scafcom: c_i += alpha * (the message as the server decodes it)
  double beta = 1.0;   // scafcom: momentum weight of the newest mean gradient
  // FedAMD (card 8.1): a kModel message carries [x; v_glob] and the client runs `steps` SARAH
  // steps (train_sarah) and sends y - x; a kAnchor message carries x and the client sends the
  // mean gradient at x over anchor_batch samples of its partition (0 or more than it has: all).
  bool fedamd = false;
  std::int64_t anchor_batch = 0;
};

// SCAFFOLD option II: the client's new control c_i+ = c_i - c + (x - y) / (K lr), from the
// global model x, the model y after K local steps of size lr, and the global control c. It is the
// mean of the K raw minibatch gradients (each step moved by lr (g - c_i + c)).
Vector scaffold_client_control(const Vector& c_i, const Vector& c, const Vector& x, const Vector& y,
                               std::int64_t steps, double lr);
// [a; b] as one vector: SCAFFOLD's downlink carries x and c in one payload.
Vector concat(const Vector& a, const Vector& b);
// Two encodings as one payload: u32 little-endian byte count of `a`, then `a`, then `b`.
Payload pack_pair(const Payload& a, const Payload& b);
// The inverse; throws Error naming `who` if the bytes are not such a pair.
std::pair<Payload, Payload> unpack_pair(const Payload& p, const char* who);

// Minibatches a client with `samples` samples takes per trip: `steps`, or with steps = 0 every
// minibatch (the last one of an epoch short) of `epochs` epochs; what train_local runs.
std::int64_t local_batches(std::int64_t samples, int batch_size, int epochs, std::int64_t steps);
// SCAFCOM's client momentum: v <- (1 - beta) v + beta g (v starts at 0).
void scafcom_momentum(Vector& v, const Vector& g, double beta);
// The model displacement y - x that a SCALLION/SCAFCOM client's message delta stands for on the
// server: -K lr (c + delta). Uncompressed with alpha = 1 this is exactly SCAFFOLD's y - x, since
// delta = (x - y) / (K lr) - c.
Vector control_displacement(const Vector& c, const Vector& delta, std::int64_t steps, double lr);

// A node of the control-variate protocols: a client's c_i or the server's c (for tests and
// monitoring; a client that never trained holds an empty vector, meaning 0).
class HoldsControl {
 public:
  virtual ~HoldsControl() = default;
  virtual const Vector& control() const = 0;
};
// `node`'s control variate, or nullptr if it keeps none.
const Vector* control_variate(const Node& node);

// What every synchronous server records at the end of `round`, before it commits the round:
// participants, train_loss, and (every eval_every rounds and after the last) the test_accuracy
// and test_loss of `model`.
void record_server_round(Context& ctx, const LearningTask& task, const Vector& model, int round, int rounds,
                         int eval_every, double participants, double train_loss);

// network.noise_std: adds N(0, std^2) from `rng` to every coordinate of a decoded payload
// vector (nothing, and no draw, when std is 0).
void add_link_noise(Vector& v, double std, Rng& rng);

// The synchronous round protocols (FedAvg and its kin): clients as `work` says, the round server
// with protocol.deadline and protocol.overselect, personalized evaluation when asked for.
NodeSet make_round_protocol(const std::string& name, Section& protocol, ProtocolParts& parts, LocalWork work);
// Their spec's common keys (local_steps, deadline, overselect) and traits (server-based, star,
// every plugin section, participation, the FedProx term), for each to extend.
PluginSpec round_protocol_spec(std::string name, std::string description);
ProtocolTraits round_protocol_traits();

// Training samples of each client, in client order (what samplers weigh by).
std::vector<std::int64_t> client_sizes(const LearningTask& task);

// FedAvg's synchronous server, with the options of the protocols built on it.
struct RoundServerOptions {
  // Deadline and over-selection (FedScale's): ceil(`overselect` x K) clients are asked, the first K
  // updates to arrive make the round, and a round also ends `deadline` after it started.
  SimTime deadline = 0;  // 0: wait for the K updates
  double overselect = 1.0;
  // theta += sum_{i in S} p_i (theta_i - theta) with p_i = n_i / (samples of ALL clients), as if
  // the unsampled clients sent a zero update (pFedGate's server): the weighted mean over S is
  // scaled by (samples of S) / (samples of all). Needs a weighted-mean aggregator.
  bool weights_over_all_clients = false;
  std::shared_ptr<PersonalModels> personal;  // null: no personalized evaluation
  // Called at the end of every round, before the round is committed, with the senders of the
  // round's updates (ascending): protocol-specific metrics.
  std::function<void(Context&, int round, const std::vector<NodeId>& senders)> round_metrics;
};
std::unique_ptr<Node> make_round_server(ProtocolParts& parts, const LocalWork& work, RoundServerOptions options);

// The client nodes of a star: entry 0 (the server) is left empty for the caller. Throws
// ConfigError naming topology.kind unless the topology is the star with node 0 at its centre.
NodeSet make_star_clients(const std::string& protocol, ProtocolParts& parts, const LocalWork& work);

}  // namespace starling
