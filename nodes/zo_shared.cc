// zo_shared as message handlers. Iteration t of node i: a compute job evaluates its S projected
// gradients at its replica theta (2 forward passes per sample); it then sends them to every other
// node and waits for everybody's values of iteration t (values of a later iteration that arrive
// early wait in an inbox). A node applies its own values as the others decode them, so quantising
// never lets replicas drift apart.
#include "nodes/zo_shared.h"

#include <map>
#include <optional>

#include "learning/zeroth_order.h"
#include "nodes/observer.h"

namespace starling {

namespace {

struct ZoSettings {
  std::uint64_t seed = 0;
  int rounds = 1;
  int eval_every = 1;
  int nodes = 1;
  double eps = 1e-3;
  int perturbations = 1;  // S
  bool quantize = true;
};

// replica_divergence = max_i ||theta_i - theta_0||_inf at evaluated rounds: 0 unless the replicas
// drifted apart (what shared randomness must prevent). Reads models like the RoundObserver: free.
class DivergenceProbe {
 public:
  explicit DivergenceProbe(std::shared_ptr<const ZoSettings> settings) : settings_(std::move(settings)) {}

  // A RoundObserver hook: it sees each observation before the round's last one commits the round.
  void report(Context& ctx, int round, NodeId id, const Vector& theta) {
    if (round % settings_->eval_every != 0 && round != settings_->rounds) return;
    Entry& e = open_[round];
    if (id == 0) {
      e.reference = theta;
      for (const auto& early : e.early) e.divergence = std::max(e.divergence, distance(early, theta));
      e.early.clear();
    } else if (e.reference) {
      e.divergence = std::max(e.divergence, distance(theta, *e.reference));
    } else {
      e.early.push_back(theta);  // node 0 has not finished this round yet
    }
    if (++e.reports == settings_->nodes) {
      ctx.metrics().metric(round, ctx.now(), kNoNode, "replica_divergence", e.divergence);
      open_.erase(round);
    }
  }

 private:
  struct Entry {
    std::optional<Vector> reference;
    std::vector<Vector> early;
    double divergence = 0.0;
    int reports = 0;
  };
  static double distance(const Vector& a, const Vector& b) { return (a - b).lpNorm<Eigen::Infinity>(); }

  std::shared_ptr<const ZoSettings> settings_;
  std::map<int, Entry> open_;
};

class ZoSharedNode final : public Node {
 public:
  ZoSharedNode(const LearningTask& task, NodeId id, std::shared_ptr<const ZoSettings> settings, const Vector& initial,
               std::shared_ptr<RoundObserver> observer)
      : task_(task), id_(id), settings_(std::move(settings)), theta_(initial), optimizer_(task.optimizer->clone()),
        observer_(std::move(observer)) {}

  const Vector& model() const { return theta_; }

  void on_start(Context& ctx) override { compute(ctx); }

  void on_compute_done(Context& ctx, int) override {
    Message m;
    m.kind = MessageKind::kProjected;
    m.round = t_;
    m.set_payload(encode(grads_));
    inbox_[t_][id_] = decode(*m.payload);  // its own values as every other node reads them
    for (NodeId j = 0; j < settings_->nodes; ++j) {
      if (j == id_) continue;
      m.receiver = j;
      ctx.send(m);
    }
    try_apply(ctx);
  }

  void on_message(Context& ctx, Message&& m) override {
    if (m.kind != MessageKind::kProjected || m.round < t_ || m.sender < 0 || m.sender >= settings_->nodes ||
        inbox_[m.round].contains(m.sender))
      throw Error("zo_shared node " + std::to_string(id_) + ": unexpected " + to_string(m.kind) + " message from " +
                  std::to_string(m.sender) + " for iteration " + std::to_string(m.round));
    inbox_[m.round][m.sender] = decode(m.payload_bytes());
    try_apply(ctx);
  }

 private:
  void compute(Context& ctx) {
    const auto& indices = task_.partition[static_cast<std::size_t>(id_)];
    const std::int64_t batch = std::min<std::int64_t>(task_.batch_size, static_cast<std::int64_t>(indices.size()));
    // Each of the two forward passes is charged as one sample's worth of compute.
    ctx.compute(2 * settings_->perturbations * batch,
                [this, &indices, &shuffle = ctx.rng(Purpose::kDataShuffle)] {
                  const int S = settings_->perturbations;
                  grads_.assign(static_cast<std::size_t>(S), 0.0f);
                  z_.resize(theta_.size());
                  loss_ = 0.0;
                  for (int s = 0; s < S; ++s) {
                    const auto members = zo::minibatch(shuffle, t_, s, indices, task_.batch_size);
                    zo::perturbation(settings_->seed, t_, id_, s, z_);
                    const auto pg = zo::projected_gradient(*task_.model, theta_, z_, settings_->eps, *task_.train,
                                                           members, scratch_);
                    grads_[static_cast<std::size_t>(s)] = pg.g;
                    loss_ += pg.loss / S;
                  }
                },
                t_);
  }

  Payload encode(const std::vector<float>& values) const {
    if (!settings_->quantize) return encode_fp32(Eigen::Map<const Vector>(values.data(), std::ssize(values)));
    Payload bytes(values.size());
    for (std::size_t s = 0; s < values.size(); ++s) bytes[s] = zo::quantize_log(values[s]);
    return bytes;
  }

  std::vector<float> decode(const Payload& payload) const {
    const int S = settings_->perturbations;
    if (!settings_->quantize) {
      const Vector v = decode_fp32(payload, S);
      return {v.data(), v.data() + v.size()};
    }
    if (std::ssize(payload) != S)
      throw Error("zo_shared node " + std::to_string(id_) + ": " + std::to_string(payload.size()) +
                  " bytes of projected gradients, expected " + std::to_string(S));
    std::vector<float> values(payload.size());
    for (std::size_t s = 0; s < payload.size(); ++s) values[s] = zo::dequantize_log(payload[s]);
    return values;
  }

  void try_apply(Context& ctx) {
    auto it = inbox_.find(t_);
    if (it == inbox_.end() || std::ssize(it->second) < settings_->nodes) return;
    std::vector<float> all;  // sorted by node id (the map's order), then s
    for (const auto& [j, values] : it->second) all.insert(all.end(), values.begin(), values.end());
    inbox_.erase(it);
    zo::apply_projected_gradients(theta_, *optimizer_, settings_->seed, t_, settings_->perturbations, all, z_,
                                  direction_);
    observer_->report(ctx, t_, id_, theta_, loss_);
    if (t_ == settings_->rounds) return;
    ++t_;
    compute(ctx);
  }

  const LearningTask& task_;
  NodeId id_;
  std::shared_ptr<const ZoSettings> settings_;
  Vector theta_;
  std::unique_ptr<Optimizer> optimizer_;  // its state (momentum), like theta, is the same on every replica
  std::shared_ptr<RoundObserver> observer_;
  int t_ = 1;
  std::vector<float> grads_;  // this iteration's own projected gradients
  double loss_ = 0.0;
  Vector z_, direction_;
  zo::Scratch scratch_;
  std::map<int, std::map<NodeId, std::vector<float>>> inbox_;  // iteration -> sender -> values
};

}  // namespace

NodeSet make_zo_shared(Section& protocol, ProtocolParts& parts) {
  auto settings = std::make_shared<ZoSettings>();
  settings->seed = parts.seed;
  settings->rounds = parts.rounds;
  settings->eval_every = parts.eval_every;
  settings->nodes = static_cast<int>(parts.task->partition.size());
  settings->eps = protocol.number("eps");
  settings->perturbations = protocol.integer<int>("perturbations");
  settings->quantize = protocol.flag("quantize");
  const int n = settings->nodes;
  const Graph graph = parts.topology->build(n, parts.seed);
  for (const auto& neighbours : graph.neighbours)
    if (std::ssize(neighbours) != n - 1)
      parts.topology_section->fail("kind", "zo_shared sends every projected gradient to every node: use complete");
  auto observer = std::make_shared<RoundObserver>(*parts.task, n, parts.rounds, parts.eval_every, parts.eval_nodes, parts.seed);
  auto probe = std::make_shared<DivergenceProbe>(settings);
  observer->on_record([probe](Context& ctx, const Observation& o) { probe->report(ctx, o.round, o.node, o.model); });
  NodeSet set;
  set.probe = observer;
  for (NodeId i = 0; i < n; ++i)
    set.nodes.push_back(std::make_unique<ZoSharedNode>(*parts.task, i, settings, parts.initial_model, observer));
  return set;
}

const Vector& zo_shared_model(const Node& node) {
  const auto* zo = dynamic_cast<const ZoSharedNode*>(&node);
  if (!zo) throw Error("zo_shared_model: not a zo_shared node");
  return zo->model();
}

void register_zo_shared(ProtocolRegistry& r) {
  r.add(PluginSpec("zo_shared", "Just One Byte: zeroth-order SPSA, nodes broadcast 1-byte projected gradients, shared seeds")
            .number("eps", 1e-3, Range::above_until(0, 1e6), "SPSA perturbation size")
            .integer("perturbations", 1, Range::between(1, 1 << 16), "random directions per step")
            .flag("quantize", true, "send each projected gradient as one byte (false: a float32)")
            .with_traits(ProtocolTraits{
                .default_topology = "complete",
                .sections = {"topology", "compressor"},
                .uplink = {.kind = CodecNeed::Kind::kNone, .why = "sends no models, only projected gradients: set protocol.quantize instead"}}),
        [](Section& s, ProtocolParts& parts) { return std::make_unique<NodeSet>(make_zo_shared(s, parts)); });
}

}  // namespace starling
