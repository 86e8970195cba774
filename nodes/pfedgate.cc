// pFedGate (Chen et al., ICML 2023; shared/algorithms.md card 1): FedAvg's synchronous rounds,
// where each client trains the shared model through a block-sparse copy chosen per minibatch by
// its private gating layer under its budget s_i. Gates never leave their client: a client sends
// only the update of the blocks it used.
#include <algorithm>
#include <cmath>

#include "learning/gating.h"
#include "nodes/server_client.h"

namespace starling {

namespace {

// protocol.budget: a number in (0, 1], {uniform: [lo, hi]}, or from_compute ({from_compute:
// {min: m}}): s_i = clamp(speed_i / median speed of the training clients, m, 1).
struct BudgetRule {
  enum class Kind { kFixed, kUniform, kFromCompute } kind = Kind::kFixed;
  double a = 0.5, b = 0.5;  // fixed: a; uniform: [a, b]; from_compute: the floor a
};

BudgetRule read_budget(Section& s) {
  const std::string key = "budget";
  const std::string usage = "must be a number in (0, 1], {uniform: [lo, hi]} with 0 < lo <= hi <= 1, "
                            "from_compute or {from_compute: {min: m}}";
  BudgetRule rule;
  if (!s.has(key)) {
    rule.a = rule.b = s.get_double(key, 0.5, 0.0, 1.0, true);
    return rule;
  }
  const YAML::Node node = s.raw(key);
  auto number = [&](const YAML::Node& n) {
    double v = 0.0;
    try {
      v = n.as<double>();
    } catch (const YAML::Exception&) {
      s.fail(key, usage);
    }
    if (!(v > 0.0 && v <= 1.0)) s.fail(key, usage);
    return v;
  };
  if (node.IsScalar()) {
    if (node.Scalar() == "from_compute") {
      rule.kind = BudgetRule::Kind::kFromCompute;
      rule.a = 0.2;
      return rule;
    }
    rule.a = rule.b = number(node);
    return rule;
  }
  if (!node.IsMap() || node.size() != 1) s.fail(key, usage);
  const auto kind = node.begin()->first.as<std::string>();
  const YAML::Node value = node.begin()->second;
  if (kind == "uniform") {
    if (!value.IsSequence() || value.size() != 2) s.fail(key, usage);
    rule.kind = BudgetRule::Kind::kUniform;
    rule.a = number(value[0]);
    rule.b = number(value[1]);
    if (rule.a > rule.b) s.fail(key, usage);
  } else if (kind == "from_compute") {
    rule.kind = BudgetRule::Kind::kFromCompute;
    rule.a = 0.2;
    if (value.IsMap()) {
      for (const auto& kv : value)
        if (kv.first.as<std::string>() != "min") s.fail(key, usage);
      if (value["min"]) rule.a = number(value["min"]);
    } else if (!value.IsNull()) {
      s.fail(key, usage);
    }
  } else {
    s.fail(key, usage);
  }
  return rule;
}

// What every client of a run shares read-only, and each client's private state (its entry is
// touched by its own compute job and, between rounds, by the evaluation probe).
struct ClientState {
  Gate gate;
  double budget = 1.0;
  GatedStats last;  // of the client's latest training
};
struct Shared {
  const LearningTask* task = nullptr;
  std::uint64_t seed = 0;
  BlockGating gating;
  GatedTraining settings;
  std::vector<ClientState> clients;
  std::vector<double> novel_budgets;
};

class PFedGateClient final : public Node {
 public:
  PFedGateClient(Shared& shared, int client, std::int64_t steps, std::unique_ptr<Compressor> downlink)
      : shared_(shared), client_(client), steps_(steps), downlink_(std::move(downlink)) {}

  void on_message(Context& ctx, Message&& m) override {
    if (m.kind != MessageKind::kModel) throw Error("pfedgate client: unexpected " + std::string(to_string(m.kind)) + " message");
    round_ = m.round;
    const LearningTask& task = *shared_.task;
    const auto& indices = task.partition[static_cast<std::size_t>(client_)];
    ClientState& state = shared_.clients[static_cast<std::size_t>(client_)];
    const auto n = static_cast<std::int64_t>(indices.size());
    const std::int64_t samples = steps_ > 0 ? samples_in_batches(n, task.batch_size, steps_) : std::int64_t{task.local_epochs} * n;
    // Simulated cost: the sparse model's FLOPs (dense FLOPs x the largest kept fraction the budget
    // allows) plus the gate's, in dense-model samples.
    const double dense = task.model->flops_per_sample();
    const double sparse = dense * static_cast<double>(shared_.gating.max_kept(state.budget)) /
                              static_cast<double>(shared_.gating.model_params()) +
                          shared_.gating.gate_flops_per_sample();
    const auto charged = static_cast<std::int64_t>(std::ceil(static_cast<double>(samples) * sparse / dense));
    const int epochs = steps_ > 0 ? 1 << 30 : task.local_epochs;
    ctx.compute(charged,
                [this, &task, &indices, &state, epochs, model = m.payload, &shuffle = ctx.rng(Purpose::kDataShuffle)] {
                  const Vector global = downlink_->decode(*model, task.model->num_params());
                  Vector theta = global;
                  auto optimizer = task.optimizer->clone();
                  GatedTraining settings = shared_.settings;
                  settings.budget = state.budget;
                  state.last = train_gated(*task.model, shared_.gating, state.gate, settings, *optimizer, *task.train,
                                           indices, epochs, task.batch_size, shuffle, theta, steps_);
                  theta -= global;  // the update; blocks outside `used` are not sent (they got no gradient)
                  update_ = encode_blocks(shared_.gating, theta, state.last.used);
                },
                round_);
  }

  void on_compute_done(Context& ctx, int) override {
    Message reply;
    reply.kind = MessageKind::kUpdate;
    reply.round = round_;
    reply.receiver = 0;
    reply.num_samples = static_cast<std::int64_t>(shared_.task->partition[static_cast<std::size_t>(client_)].size());
    reply.loss = static_cast<float>(shared_.clients[static_cast<std::size_t>(client_)].last.train.mean_loss);
    reply.set_payload(std::move(update_));
    update_ = Payload();
    ctx.send(std::move(reply));
  }

 private:
  Shared& shared_;
  int client_;
  std::int64_t steps_;
  std::unique_ptr<Compressor> downlink_;
  Payload update_;
  int round_ = 0;
};

// The server's view of an uplink payload: the bitmap-and-blocks encoding of encode_blocks.
// (Its own encode keeps the blocks that are not all zero; clients encode their used blocks.)
class BlockCodec final : public Compressor {
 public:
  explicit BlockCodec(std::shared_ptr<const Shared> shared) : shared_(std::move(shared)) {}
  Payload encode(const Vector& v, Rng&) override {
    const auto& blocks = shared_->gating.blocks();
    std::vector<std::uint8_t> used(blocks.size());
    for (std::size_t j = 0; j < blocks.size(); ++j) used[j] = !v.segment(blocks[j].offset, blocks[j].size).isZero(0.0f);
    return encode_blocks(shared_->gating, v, used);
  }
  Vector decode(const Payload& payload, std::int64_t dim) override {
    if (dim != shared_->gating.model_params()) throw Error("block payload decoded to the wrong dimension");
    return decode_blocks(shared_->gating, payload);
  }
  std::unique_ptr<Compressor> clone() const override { return std::make_unique<BlockCodec>(shared_); }

 private:
  std::shared_ptr<const Shared> shared_;
};

// Personalized models: the global theta through the client's own gate. A novel client starts a
// fresh gate (its kGateInit stream) at every evaluation and, with eval.finetune_steps N, trains
// only the gate for N minibatches on its training samples (theta frozen) before it is scored.
class GatedModels final : public PersonalModels {
 public:
  explicit GatedModels(std::shared_ptr<const Shared> shared) : shared_(std::move(shared)) {}

  EvalCounts evaluate_client(int client, const Vector& global, int) const override {
    const LearningTask& task = *shared_->task;
    const ClientState& state = shared_->clients[static_cast<std::size_t>(client)];
    return evaluate_gated(*task.model, shared_->gating, state.gate, state.budget, global, *task.train,
                          task.local_test[static_cast<std::size_t>(client)], task.batch_size);
  }

  EvalCounts evaluate_novel(int k, const Vector& global, int round) const override {
    const LearningTask& task = *shared_->task;
    const auto i = static_cast<std::size_t>(k);
    const NodeId node = static_cast<NodeId>(task.partition.size()) + 1 + k;
    Rng init(shared_->seed, node, Purpose::kGateInit);
    Gate gate = make_gate(shared_->gating, *task.train, task.novel_train[i], init);
    const double budget = shared_->novel_budgets[i];
    if (task.finetune_steps > 0) {
      GatedTraining settings = shared_->settings;
      settings.budget = budget;
      settings.train_model = false;
      Rng shuffle = Rng(shared_->seed, node, Purpose::kLocalTest).substream(static_cast<std::uint64_t>(round));
      Vector theta = global;
      auto optimizer = task.optimizer->clone();
      train_gated(*task.model, shared_->gating, gate, settings, *optimizer, *task.train, task.novel_train[i], 1 << 30,
                  task.batch_size, shuffle, theta, task.finetune_steps);
    }
    return evaluate_gated(*task.model, shared_->gating, gate, budget, global, *task.train, task.novel_test[i],
                          task.batch_size);
  }

 private:
  std::shared_ptr<const Shared> shared_;
};

}  // namespace

NodeSet make_pfedgate(Section& protocol, ProtocolParts& parts) {
  const LearningTask& task = *parts.task;
  const std::int64_t steps = protocol.integer("local_steps");
  const int blocks = protocol.integer<int>("blocks");
  const BudgetRule rule = read_budget(protocol);
  GatedTraining settings;
  settings.gate_lr = static_cast<float>(protocol.number("gate_lr", task.optimizer->lr()));
  settings.clip = static_cast<float>(protocol.number("clip_norm"));
  const bool all_weights = !protocol.flag("aggregate_sampled");

  const int clients = static_cast<int>(task.partition.size()), novel = static_cast<int>(task.novel_train.size());
  auto shared = std::make_shared<Shared>(Shared{.task = &task,
                                                .seed = parts.seed,
                                                .gating = BlockGating(*task.model, blocks,
                                                                      static_cast<int>(task.train->num_features())),
                                                .settings = settings,
                                                .clients = {},
                                                .novel_budgets = {}});
  // Budgets: client c is node c + 1, novel client k node clients + 1 + k.
  std::vector<double> speeds = parts.compute_speeds;
  if (static_cast<int>(speeds.size()) < clients + 1 + novel) speeds.resize(static_cast<std::size_t>(clients + 1 + novel), 1.0);
  std::vector<double> training(speeds.begin() + 1, speeds.begin() + 1 + clients);
  std::nth_element(training.begin(), training.begin() + clients / 2, training.end());
  double median = training[static_cast<std::size_t>(clients / 2)];
  if (clients % 2 == 0) median = (median + *std::max_element(training.begin(), training.begin() + clients / 2)) / 2;
  auto budget_of = [&](NodeId node) {
    switch (rule.kind) {
      case BudgetRule::Kind::kFixed: return rule.a;
      case BudgetRule::Kind::kUniform: return rule.a + (rule.b - rule.a) * Rng(parts.seed, node, Purpose::kBudget).uniform();
      case BudgetRule::Kind::kFromCompute: return std::clamp(speeds[static_cast<std::size_t>(node)] / median, rule.a, 1.0);
    }
    return 1.0;
  };
  for (int c = 0; c < clients; ++c) {
    Rng init(parts.seed, c + 1, Purpose::kGateInit);
    shared->clients.push_back(
        {make_gate(shared->gating, *task.train, task.partition[static_cast<std::size_t>(c)], init), budget_of(c + 1), {}});
  }
  for (int k = 0; k < novel; ++k) shared->novel_budgets.push_back(budget_of(clients + 1 + k));

  NodeSet set = make_star_clients("pfedgate", parts, LocalWork{});  // checks the topology
  for (int c = 0; c < clients; ++c)
    set.nodes[static_cast<std::size_t>(c + 1)] = std::make_unique<PFedGateClient>(*shared, c, steps, parts.downlink->clone());

  RoundServerOptions options;
  options.weights_over_all_clients = all_weights;
  if (task.personalized()) options.personal = std::make_shared<GatedModels>(shared);
  // Per round: the mean fraction of the model the senders used (sent) and kept per batch
  // (computed with), and the idealised uplink 4 s_i d summed since the start.
  auto ideal_bytes = std::make_shared<double>(0.0);
  options.round_metrics = [shared, ideal_bytes](Context& ctx, int round, const std::vector<NodeId>& senders) {
    const auto d = static_cast<double>(shared->gating.model_params());
    if (round == 1)  // each client's budget s_i, once (node = the client's node id)
      for (std::size_t c = 0; c < shared->clients.size(); ++c)
        ctx.metrics().metric(round, ctx.now(), static_cast<NodeId>(c + 1), "budget", shared->clients[c].budget);
    double used = 0.0, kept = 0.0;
    for (NodeId node : senders) {
      const ClientState& s = shared->clients[static_cast<std::size_t>(node - 1)];
      used += static_cast<double>(s.last.used_params) / d;
      kept += static_cast<double>(s.last.kept_sum) / (d * static_cast<double>(std::max<std::int64_t>(s.last.train.batches, 1)));
      *ideal_bytes += 4.0 * s.budget * d;
    }
    const double m = std::max<double>(1.0, static_cast<double>(senders.size()));
    ctx.metrics().metric(round, ctx.now(), kNoNode, "sent_fraction", used / m);
    ctx.metrics().metric(round, ctx.now(), kNoNode, "kept_fraction", kept / m);
    ctx.metrics().metric(round, ctx.now(), kNoNode, "ideal_uplink_bytes", *ideal_bytes);
  };
  parts.uplink = std::make_unique<BlockCodec>(shared);
  set.nodes[0] = make_round_server(parts, LocalWork{}, std::move(options));
  return set;
}

void register_pfedgate(ProtocolRegistry& r) {
  // Its clients train their private gates on every model they get: no straggler handling.
  r.add(PluginSpec("pfedgate", "pFedGate: FedAvg rounds over block-sparse models picked per batch by private gates under budgets")
            .integer("local_steps", 0, Range::at_least(0), "minibatches per client per round; 0: train.local_epochs epochs")
            .integer("blocks", 5, Range::between(1, 1 << 20), "blocks per layer the gates choose from")
            .number("budget", 0.5, Range::above_until(0, 1),
                    "fraction of the model each client keeps: a number, {uniform: [lo, hi]}, from_compute or "
                    "{from_compute: {min: m}}")
            .number("gate_lr", 0.05, Range::above_until(0, 1e6), "the gates' learning rate")
            .computed_default("train.lr")
            .number("clip_norm", 10.0, Range::at_least(0), "gradient-norm clip of the gates (0: none)")
            .flag("aggregate_sampled", false, "weight updates by the sampled clients' samples (false: by all clients')")
            .with_traits(ProtocolTraits{.server_based = true,
                                        .default_topology = "star",
                                        .sections = protocol_plugin_sections(),
                                        .personalized = true,
                                        .no_deploy = "its personalized evaluation reads each client's private gate in memory",
                                        .uplink = {.kind = CodecNeed::Kind::kNone,
                                                   .feedback = false,
                                                   .why = "sends the blocks its clients used (its own encoding)"}}),
        [](Section& s, ProtocolParts& parts) { return std::make_unique<NodeSet>(make_pfedgate(s, parts)); });
}

}  // namespace starling
