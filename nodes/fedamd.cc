// FedAMD: anchor sampling (Wu et al., ICML 2023; card 8.1). The server keeps, for every client,
// the latest large-batch gradient b_i it sent (all of them computed at x_0 before round 1), and
// v_glob = (1/n) sum_i b_i. Each round's sampled clients are split into anchors, which refresh
// their b_i at x, and miners, which run SARAH-style steps from x along v_glob; only the miners'
// updates move x. The clients are the star's ServerClient in its FedAMD mode.
#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "nodes/server_client.h"

namespace starling {

namespace {

struct FedAmdParams {
  double p = 0.2;   // probability that a sampled client is an anchor
  int period = 0;   // > 0: the deterministic variant, every client of rounds 1, 1 + period, ... is an anchor
};

class FedAmdServer final : public Node {
 public:
  FedAmdServer(ProtocolParts& parts, const FedAmdParams& params)
      : task_(*parts.task), params_(params), rounds_(parts.rounds), eval_every_(parts.eval_every),
        model_(parts.initial_model), sampler_(std::move(parts.sampler)), aggregator_(std::move(parts.aggregator)),
        optimizer_(std::move(parts.server_optimizer)), downlink_(parts.downlink->clone()),
        uplink_decoder_(parts.uplink->clone()), clients_(static_cast<int>(parts.task->partition.size())),
        table_(static_cast<std::size_t>(clients_)), sizes_(client_sizes(*parts.task)),
        losses_(static_cast<std::size_t>(clients_), std::nan("")) {}

  // Round 0 (its bytes and time count towards round 1): every client's b_i at x_0.
  void on_start(Context& ctx) override {
    round_ = 0;
    std::vector<int> all(static_cast<std::size_t>(clients_));
    for (int c = 0; c < clients_; ++c) all[static_cast<std::size_t>(c)] = c;
    send_round(ctx, all, std::vector<bool>(all.size(), true));
  }

  void on_message(Context& ctx, Message&& m) override {
    if (m.kind != MessageKind::kUpdate || m.round != round_ || !expected_.count(m.sender) || received_.count(m.sender))
      throw Error("fedamd server: unexpected " + std::string(to_string(m.kind)) + " message from node " +
                  std::to_string(m.sender) + " in round " + std::to_string(m.round));
    auto& r = received_[m.sender];
    r.samples = m.num_samples;
    r.loss = m.loss;
    losses_[static_cast<std::size_t>(m.sender - 1)] = static_cast<double>(m.loss);  // what loss-based samplers see
    Vector v = uplink_decoder_->receive(m.sender, m.payload_bytes(), model_.size());
    if (anchors_.count(m.sender)) table_[static_cast<std::size_t>(m.sender - 1)] = std::move(v);
    else r.update = std::move(v);
    if (received_.size() < expected_.size()) return;
    if (round_ == 0) start_round(ctx, 1);
    else finish_round(ctx);
  }

 private:
  struct Received {
    Vector update;  // miners only
    std::int64_t samples = 0;
    float loss = 0.0f;
  };

  // Sends x to the anchors and [x; v_glob] to the miners of `clients` (0-based, ascending).
  void send_round(Context& ctx, const std::vector<int>& clients, const std::vector<bool>& anchor) {
    expected_.clear();
    anchors_.clear();
    received_.clear();
    Message to_anchor, to_miner;
    to_anchor.kind = MessageKind::kAnchor;
    to_miner.kind = MessageKind::kModel;
    to_anchor.round = to_miner.round = round_;
    const bool any_anchor = std::find(anchor.begin(), anchor.end(), true) != anchor.end();
    const bool any_miner = std::find(anchor.begin(), anchor.end(), false) != anchor.end();
    if (any_anchor) to_anchor.set_payload(downlink_->encode(model_, ctx.rng(Purpose::kCompression)));
    if (any_miner) to_miner.set_payload(downlink_->encode(concat(model_, global_direction()), ctx.rng(Purpose::kCompression)));
    for (std::size_t i = 0; i < clients.size(); ++i) {
      Message& m = anchor[i] ? to_anchor : to_miner;
      m.receiver = clients[i] + 1;
      expected_.insert(m.receiver);
      if (anchor[i]) anchors_.insert(m.receiver);
      ctx.send(m);
    }
  }

  // v_glob = (1/n) sum_i b_i, summed in client order.
  Vector global_direction() const {
    Vector sum = Vector::Zero(model_.size());
    for (const Vector& b : table_) sum += b;
    return sum / static_cast<float>(clients_);
  }

  void start_round(Context& ctx, int round) {
    round_ = round;
    const std::vector<int> clients = sampler_->sample(ClientPool{round, clients_, &sizes_, &losses_, {}},
                                                      sampler_->per_round(clients_), ctx.rng(Purpose::kSampling));
    std::vector<bool> anchor(clients.size());
    for (std::size_t i = 0; i < clients.size(); ++i)
      anchor[i] = params_.period > 0 ? (round - 1) % params_.period == 0 : ctx.rng(Purpose::kAnchor).uniform() < params_.p;
    send_round(ctx, clients, anchor);
  }

  void finish_round(Context& ctx) {
    std::vector<Contribution> miners;
    double loss_sum = 0.0, samples = 0.0;
    for (auto& [sender, r] : received_) {  // std::map: ascending sender
      if (!anchors_.count(sender)) miners.push_back({sender, 1.0, &r.update});  // the card's plain mean
      loss_sum += static_cast<double>(r.loss) * static_cast<double>(r.samples);
      samples += static_cast<double>(r.samples);
    }
    if (!miners.empty()) optimizer_->apply(model_, aggregator_->combine(miners));  // anchors do not move x
    record_server_round(ctx, task_, model_, round_, rounds_, eval_every_, static_cast<double>(received_.size()),
                        samples > 0 ? loss_sum / samples : 0.0);
    ctx.metrics().metric(round_, ctx.now(), kNoNode, "anchors", static_cast<double>(anchors_.size()));
    received_.clear();
    ctx.finish_round(round_);
    if (round_ == rounds_) ctx.stop();
    else start_round(ctx, round_ + 1);
  }

  const LearningTask& task_;
  FedAmdParams params_;
  int rounds_, eval_every_;
  Vector model_;
  std::unique_ptr<ClientSampler> sampler_;
  std::unique_ptr<Aggregator> aggregator_;
  std::unique_ptr<ServerOptimizer> optimizer_;
  std::unique_ptr<Compressor> downlink_, uplink_decoder_;
  int clients_;
  std::vector<Vector> table_;  // b_i of client i (node i + 1)
  std::vector<std::int64_t> sizes_;  // training samples per client
  std::vector<double> losses_;       // last loss each client reported (NaN: never)
  int round_ = 0;
  std::set<NodeId> expected_, anchors_;
  std::map<NodeId, Received> received_;
};

}  // namespace

NodeSet make_fedamd(Section& protocol, ProtocolParts& parts) {
  FedAmdParams params;
  params.period = protocol.integer<int>("period");
  if (params.period == 1)
    protocol.fail("period", "1 would make every round an anchor round, in which x never moves; use 0 (off) or >= 2");
  if (params.period > 0 && protocol.has("p"))
    protocol.fail("p", "is not used with protocol.period (every client of every period-th round is an anchor); set one");
  if (params.period == 0) params.p = protocol.number("p");
  const LocalWork work{.steps = protocol.integer("local_steps"), .fedamd = true, .anchor_batch = protocol.integer("anchor_batch")};
  NodeSet set = make_star_clients("fedamd", parts, work);
  set.nodes[0] = std::make_unique<FedAmdServer>(parts, params);  // last: the server takes the parts it owns
  return set;
}

void register_fedamd(ProtocolRegistry& r) {
  // Its rounds wait for every anchor and miner, and its anchors' gradients are not models; it
  // sends [model; v_glob] in one payload and gradients and updates alike through one codec.
  const CodecNeed dense{.kind = CodecNeed::Kind::kDense, .feedback = false,
                        .why = "sends [model; v_glob] in one payload and gradients and updates alike"};
  r.add(PluginSpec("fedamd", "FedAMD anchor sampling: anchors send large-batch gradients, miners take SARAH steps along their mean")
            .integer("period", 0, Range::between(0, 1 << 30), "every period-th round all sampled clients are anchors; 0: off (use p)")
            .number("p", 0.2, Range::between(0, 1), "probability that a sampled client is an anchor (period 0)")
            .integer("local_steps", 10, Range::at_least(1), "a miner's SARAH steps per round")
            .integer("anchor_batch", 0, Range::at_least(0), "samples of an anchor's gradient; 0: all its samples")
            .with_traits(ProtocolTraits{.server_based = true,
                                        .default_topology = "star",
                                        .sections = protocol_plugin_sections(),
                                        .uplink = dense,
                                        .downlink = dense}),
        [](Section& s, ProtocolParts& parts) { return std::make_unique<NodeSet>(make_fedamd(s, parts)); });
}

}  // namespace starling
