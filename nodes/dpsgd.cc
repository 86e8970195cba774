// D-PSGD (Lian et al., 2017) as message handlers, with multiple gossip steps (card 8.5) and
// sparse communication (communicate_every).
//
// Each round every node trains locally, then, in rounds where it communicates, runs Q gossip
// steps: it sends its model to its out-neighbours and, once the models of all its in-neighbours
// for that step have arrived, replaces its model by sum_j W_ij x_j (j = itself and in-neighbours,
// in id order). Models of a later step or round that arrive early wait in an inbox.
//
// With a lossy compressor, sending C(x_j) would inject a fresh compression error into every model
// at every step. Instead the nodes run CHOCO-SGD (Koloskova, Stich, Jaggi, ICML 2019, Alg. 2):
// node i keeps public copies x̂_j of itself and its in-neighbours, sends q_i = C(x_i - x̂_i), every
// holder of x̂_i adds decode(q_i), and x_i += gamma sum_j W_ij (x̂_j - x̂_i). All copies of x̂_i add
// the same bytes, so they stay equal and what one step leaves out is sent by the next. With an
// uncompressed codec the copies are the models themselves (x̂ = x, nothing is kept).
//
// Byzantine robustness (MoNNA, card 6.1): with `aggregation: robust` a node replaces its model by
// the run's `aggregator` over the models it received plus its own (weights W_ij, so `mean` is W
// mixing); with `aggregation: nna` by NNA(pivot = own model, V_i, q = |V_i| - f), the mean of the q
// received models closest to its own. `momentum` beta adds MoNNA's local momentum. Attackers
// (`attack:`) train and mix like honest nodes, but their receivers see corrupted models: the
// attack replaces them at the receiver just before it aggregates (as FedAvg's server does), so ALIE
// is omniscient about the honest models that receiver got, and a sign flip sends -x.
//
// `wait_for: n_minus_f` (MoNNA's asynchronous reproduction, card 6.1; aggregation nna on a static
// graph): node i with n_i = in-neighbours + 1 does not wait for everybody. It mixes as soon as it
// holds q_i = n_i - f models, its own included: every Byzantine in-neighbour's (the adversary
// controls the schedule, so its messages are always among the first heard; in the simulation the
// node waits for them, as they travel the network like any other) and the honest ones that
// arrived first on simulated time, the network deciding; with b Byzantine in-neighbours that is
// max(0, q_i - 1 - b) honest neighbours, so with b <= f exactly q_i models. NNA then averages the
// |V_i| - f = n_i - 2f closest. Models of a step that come after it was mixed are dropped: they
// never enter a later step (a slow node's messages are then simply never used).
#include <algorithm>
#include <cmath>
#include <map>
#include <numbers>
#include <optional>

#include "aggregators/robust.h"
#include "learning/optimizer.h"
#include "learning/training.h"
#include "learning/variance_correction.h"
#include "nodes/observer.h"
#include "nodes/protocol.h"

namespace starling {

namespace {

// How many extra peers each node pulls in a round, as a function of training progress t/T
// ("A single merging suffices", card 3). r = n - 1 on a complete graph is an exact global average.
struct MergeSchedule {
  enum class Kind { kFixed, kTruncate, kWindow, kLinear, kCosine } kind = Kind::kFixed;
  double r_start = 0.2, r_end = 0.0, point = 0.99, window = 0.05;

  double peers(int round, int rounds) const {
    const double progress = static_cast<double>(round) / rounds;
    switch (kind) {
      case Kind::kFixed: return r_start;
      case Kind::kTruncate: return progress < point ? r_start : r_end;
      case Kind::kWindow: return progress >= point && progress < point + window ? r_end : r_start;
      case Kind::kLinear: return r_start + (r_end - r_start) * progress;
      case Kind::kCosine: return r_end + (r_start - r_end) * (1.0 + std::cos(std::numbers::pi * progress)) / 2.0;
    }
    return r_start;
  }
};

// The graph and mixing matrix of each round, shared by all nodes (computed once per round).
// With a merge schedule, round t's graph is drawn from the topology: node i pulls floor(r)
// (+1 with probability frac(r)) of its neighbours, from its own stream's substream t, and averages
// uniformly; the draws use shared randomness (run seed, node, round), so every node can compute
// who pulls from it and send its model there, no request needed.
class GraphSchedule {
 public:
  struct Round {
    Graph graph;
    MixingMatrix w;
    std::vector<std::vector<NodeId>> out;
  };
  GraphSchedule(std::shared_ptr<const Topology> topology, MixingRule rule, int nodes, int rounds, std::uint64_t seed,
                std::optional<MergeSchedule> merge)
      : topology_(std::move(topology)), rule_(rule), nodes_(nodes), rounds_(rounds), seed_(seed), merge_(merge) {}

  const Round& at(int round) {
    const int key = topology_->time_varying() || merge_ ? round : 1;
    auto it = cache_.find(key);
    if (it == cache_.end()) {
      Round r{topology_->at_round(nodes_, key, seed_), {}, {}};
      if (merge_) r.graph = pulled(r.graph, round);
      r.w = merge_ ? uniform_rows(r.graph) : rule_(r.graph);
      r.out = r.graph.out_neighbours();
      while (cache_.size() > 8) cache_.erase(cache_.begin());  // nodes are at most a few rounds apart
      it = cache_.emplace(key, std::move(r)).first;
    }
    return it->second;
  }

 private:
  Graph pulled(const Graph& base, int round) const {
    Graph g{std::vector<std::vector<NodeId>>(base.neighbours.size()), true};
    const double r = merge_->peers(round, rounds_);
    for (std::size_t i = 0; i < base.neighbours.size(); ++i) {
      const auto& candidates = base.neighbours[i];
      Rng rng = Rng(seed_, static_cast<NodeId>(i), Purpose::kSampling).substream(static_cast<std::uint64_t>(round));
      const double want = std::min(r, static_cast<double>(candidates.size()));
      int count = static_cast<int>(want);
      if (count < static_cast<int>(candidates.size()) && rng.uniform() < want - count) ++count;
      for (auto k : rng.sample_without_replacement(static_cast<std::int32_t>(candidates.size()), count))
        g.neighbours[i].push_back(candidates[static_cast<std::size_t>(k)]);
      std::sort(g.neighbours[i].begin(), g.neighbours[i].end());
    }
    return g;
  }
  // x_i = mean of itself and what it pulled.
  static MixingMatrix uniform_rows(const Graph& g) {
    MixingMatrix w;
    for (std::size_t i = 0; i < g.neighbours.size(); ++i) {
      const double weight = 1.0 / static_cast<double>(g.neighbours[i].size() + 1);
      std::vector<std::pair<NodeId, double>> row{{static_cast<NodeId>(i), weight}};
      for (NodeId j : g.neighbours[i]) row.emplace_back(j, weight);
      std::sort(row.begin(), row.end());
      w.rows.push_back(std::move(row));
    }
    return w;
  }

  std::shared_ptr<const Topology> topology_;
  MixingRule rule_;
  int nodes_, rounds_;
  std::uint64_t seed_;
  std::optional<MergeSchedule> merge_;
  std::map<int, Round> cache_;
};

MergeSchedule read_merge(Section merge, int nodes) {
  MergeSchedule m;
  const auto kind = merge.text("schedule");
  m.kind = kind == "fixed"      ? MergeSchedule::Kind::kFixed
           : kind == "truncate" ? MergeSchedule::Kind::kTruncate
           : kind == "window"   ? MergeSchedule::Kind::kWindow
           : kind == "linear"   ? MergeSchedule::Kind::kLinear
                                : MergeSchedule::Kind::kCosine;
  // Every parameter is read for every schedule, so a sweep over `schedule` can share them.
  const auto at_most_others = [&](const char* key, double v) {
    if (v > nodes - 1.0) merge.fail(key, Section::shortest(v) + " is out of range; must be <= " + std::to_string(nodes - 1) + " (nodes - 1)");
    return v;
  };
  m.r_start = at_most_others("r_start", merge.number("r_start"));
  m.r_end = at_most_others("r_end", merge.number("r_end", nodes - 1.0));
  m.point = merge.number("point");
  m.window = merge.number("window");
  return m;
}

struct DpsgdSettings {
  int rounds = 1;
  int gossip_steps = 1;       // Q
  int communicate_every = 1;  // gossip only in rounds divisible by this
  std::int64_t local_steps = 0;  // minibatches per round; 0 = train.local_epochs epochs
  bool variance_correction = false;  // rescale tensors after mixing (card 4)
  double consensus_lr = 1.0;  // gamma; 1 with an uncompressed codec is plain D-PSGD
  bool choco = false;         // lossy codec: send differences to public copies (CHOCO)
  enum class Aggregation { kMix, kRobust, kNna } aggregation = Aggregation::kMix;
  int f = 0;                  // nna: q = |V_i| - f
  bool wait_for_all = true;   // false: n_minus_f, mix once n_i - f models are in
  double momentum = 0.0;      // beta of MoNNA's local momentum; 0 = none
};

// MoNNA's local momentum: m = beta m + (1 - beta) g, then the run's optimizer steps along m
// (x^{1/2} = x - lr m with plain SGD; weight decay, if any, is added outside the momentum). The
// buffer belongs to the node and lives across rounds, whereas train_local's optimizer is fresh
// every round. As in the authors' PyTorch code (momentum = dampening = beta), the first step sets
// m = g, not (1 - beta) g.
class DampedMomentum final : public Optimizer {
 public:
  DampedMomentum(Vector& buffer, double beta, std::unique_ptr<Optimizer> inner)
      : buffer_(buffer), beta_(static_cast<float>(beta)), inner_(std::move(inner)) {}
  void step(Vector& params, Vector& grad) override {
    if (buffer_.size() != grad.size()) buffer_ = grad;
    else buffer_ = beta_ * buffer_ + (1.0f - beta_) * grad;
    grad = buffer_;
    inner_->step(params, grad);
  }
  double lr() const override { return inner_->lr(); }
  std::unique_ptr<Optimizer> clone() const override {
    return std::make_unique<DampedMomentum>(buffer_, beta_, inner_->clone());
  }

 private:
  Vector& buffer_;
  float beta_;
  std::unique_ptr<Optimizer> inner_;
};

// compressor.kind none sends models; any other codec runs CHOCO, whose consensus step size has no
// default: how large it may be depends on how much the codec loses.
void read_compression(Section& protocol, Section& compressor, DpsgdSettings& settings) {
  const auto kind = compressor.get<std::string>("kind", "none");
  settings.choco = kind != "none";
  if (settings.choco && !protocol.has("consensus_lr"))
    protocol.fail("consensus_lr", "is required with compressor.kind " + kind +
                                      ": the CHOCO consensus step size gamma in (0, 1], smaller for coarser codecs");
  settings.consensus_lr = protocol.number("consensus_lr");
}

class DpsgdNode final : public Node {
 public:
  DpsgdNode(const LearningTask& task, NodeId id, const DpsgdSettings& settings, const Vector& initial,
            std::shared_ptr<GraphSchedule> graphs, std::shared_ptr<RoundObserver> observer,
            std::unique_ptr<Compressor> codec, std::map<NodeId, Vector> copies, std::unique_ptr<Aggregator> aggregator,
            std::shared_ptr<const Attack> attack)
      : task_(task), id_(id), settings_(settings), x_(initial), graphs_(std::move(graphs)),
        observer_(std::move(observer)), codec_(std::move(codec)), copies_(std::move(copies)),
        aggregator_(std::move(aggregator)), attack_(std::move(attack)) {}

  void on_start(Context& ctx) override {
    if (attack_ && attack_->is_attacker(id_)) ctx.metrics().metric(0, ctx.now(), id_, "byzantine", 1.0);
    train(ctx);
  }

  void on_compute_done(Context& ctx, int) override {
    if (round_ % settings_.communicate_every == 0 && settings_.gossip_steps > 0) {
      step_ = 1;
      broadcast(ctx);
      try_mix(ctx);
    } else {
      end_round(ctx);
    }
  }

  void on_message(Context& ctx, Message&& m) override {
    const bool past = m.round < round_ || (m.round == round_ && m.step < step_);
    if (m.kind != MessageKind::kGossip || (past && settings_.wait_for_all))
      throw Error("dpsgd node " + std::to_string(id_) + ": unexpected " + to_string(m.kind) + " message for round " +
                  std::to_string(m.round) + " step " + std::to_string(m.step));
    if (past) return;  // wait_for n_minus_f: that step was mixed without it
    auto& box = inbox_[{m.round, m.step}];
    box.order.push_back(m.sender);
    box.got.emplace(m.sender, std::move(m.payload));
    try_mix(ctx);
  }

 private:
  void train(Context& ctx) {
    const auto& indices = task_.partition[static_cast<std::size_t>(id_)];
    const auto n = static_cast<std::int64_t>(indices.size());
    const std::int64_t samples = settings_.local_steps > 0
                                     ? samples_in_batches(n, task_.batch_size, settings_.local_steps)
                                     : std::int64_t{task_.local_epochs} * n;
    const int epochs = settings_.local_steps > 0 ? 1 << 30 : task_.local_epochs;
    ctx.compute(samples,
                [this, &indices, epochs, &shuffle = ctx.rng(Purpose::kDataShuffle)] {
                  std::unique_ptr<Optimizer> optimizer = task_.optimizer->clone();
                  if (settings_.momentum > 0.0)
                    optimizer = std::make_unique<DampedMomentum>(momentum_, settings_.momentum, std::move(optimizer));
                  loss_ = train_local(*task_.model, *optimizer, *task_.train, indices, epochs, task_.batch_size, shuffle,
                                      x_, settings_.local_steps)
                              .mean_loss;
                },
                round_);
  }

  void broadcast(Context& ctx) {
    Message m;
    m.kind = MessageKind::kGossip;
    m.round = round_;
    m.step = static_cast<std::uint16_t>(step_);
    Rng& rng = ctx.rng(Purpose::kCompression);  // one encoding for every receiver
    if (settings_.choco) {
      Vector& own = copies_.at(id_);
      Payload q = codec_->encode(x_ - own, rng);
      own += codec_->decode(q, x_.size());  // what every receiver adds to its copy
      m.set_payload(std::move(q));
    } else {
      m.set_payload(codec_->encode(x_, rng));
    }
    for (NodeId j : graphs_->at(round_).out[static_cast<std::size_t>(id_)]) {
      m.receiver = j;
      ctx.send(m);
    }
  }

  void try_mix(Context& ctx) {
    while (step_ > 0) {
      const auto& round = graphs_->at(round_);
      const auto key = std::pair{round_, step_};
      const auto& box = inbox_[key];
      const auto& got = box.got;
      const auto& row = round.w.rows[static_cast<std::size_t>(id_)];
      std::vector<Vector> models;  // uncompressed: the neighbours' models, for this step only
      models.reserve(row.size());
      std::vector<Contribution> received;  // ascending sender, itself included
      if (settings_.wait_for_all) {
        if (got.size() < round.graph.neighbours[static_cast<std::size_t>(id_)].size()) return;
        for (const auto& [j, w] : row)
          received.push_back({j, w, j == id_ ? &own_copy() : &public_copy(j, *got.at(j), models)});
      } else {
        const auto heard = quorum(round.graph.neighbours[static_cast<std::size_t>(id_)], box);
        if (!heard) return;
        for (const auto& [j, w] : row)  // nna weighs every model alike; W only gives the id order
          if (j == id_ || std::binary_search(heard->begin(), heard->end(), j))
            received.push_back({j, w, j == id_ ? &own_copy() : &public_copy(j, *got.at(j), models)});
      }
      if (attack_ && !attack_->is_attacker(id_)) corrupt(received);
      x_ = combine(received);
      inbox_.erase(key);
      if (step_ < settings_.gossip_steps) {
        ++step_;
        broadcast(ctx);
      } else {
        step_ = 0;
        end_round(ctx);
      }
    }
  }

  struct Inbox {
    std::map<NodeId, std::shared_ptr<const Payload>> got;
    std::vector<NodeId> order;  // senders in arrival order
  };

  // wait_for n_minus_f: the in-neighbours (ascending) whose models this step uses, once enough are
  // in: every Byzantine one, and the first max(0, n_i - f - 1 - b) honest ones to arrive.
  std::optional<std::vector<NodeId>> quorum(const std::vector<NodeId>& in, const Inbox& box) const {
    std::vector<NodeId> used;
    for (NodeId j : in)
      if (attack_ && attack_->is_attacker(j)) {
        if (!box.got.count(j)) return std::nullopt;
        used.push_back(j);
      }
    const auto byzantine = static_cast<int>(used.size());
    const int needed = std::max(0, static_cast<int>(in.size()) - settings_.f - byzantine);
    int honest = 0;
    for (auto it = box.order.begin(); it != box.order.end() && honest < needed; ++it)
      if (!attack_ || !attack_->is_attacker(*it)) used.push_back(*it), ++honest;
    if (honest < needed) return std::nullopt;
    std::sort(used.begin(), used.end());
    return used;
  }

  // The attackers' entries become what they send. Attacks run uncompressed (make_dpsgd), so the
  // vectors are this step's `models` and x_, both this node's own; honest ones are only read.
  void corrupt(const std::vector<Contribution>& received) const {
    std::map<NodeId, Vector*> by_sender;
    for (const auto& c : received) by_sender.emplace(c.sender, const_cast<Vector*>(c.vector));
    attack_->corrupt(round_, by_sender);
  }

  Vector combine(const std::vector<Contribution>& received) {
    switch (settings_.aggregation) {
      case DpsgdSettings::Aggregation::kRobust: return aggregator_->combine(received);
      case DpsgdSettings::Aggregation::kNna: {
        std::vector<const Vector*> vectors;
        for (const auto& c : received) vectors.push_back(c.vector);
        if (static_cast<std::size_t>(settings_.f) >= vectors.size())
          throw Error("dpsgd node " + std::to_string(id_) + ": protocol.f = " + std::to_string(settings_.f) +
                      " leaves nothing of " + std::to_string(vectors.size()) + " models to average");
        return nearest_average(x_, vectors, vectors.size() - static_cast<std::size_t>(settings_.f));
      }
      case DpsgdSettings::Aggregation::kMix: break;
    }
    std::vector<const Vector*> neighbours;
    Vector mixed = Vector::Zero(x_.size());
    for (const auto& c : received) {
      mixed += static_cast<float>(c.weight) * *c.vector;
      if (c.sender != id_) neighbours.push_back(c.vector);
    }
    if (settings_.variance_correction) correct_variance(mixed, neighbours, task_.model->tensors());
    // x_i += gamma (sum_j W_ij x̂_j - x̂_i), grouped so that uncompressed (x̂_i = x_i) with gamma = 1
    // computes exactly D-PSGD's x_i = sum_j W_ij x_j: x_i - x̂_i is then 0 and 1 * mixed is mixed.
    const auto gamma = static_cast<float>(settings_.consensus_lr);
    return (x_ - gamma * own_copy()) + gamma * mixed;
  }

  const Vector& own_copy() const { return settings_.choco ? copies_.at(id_) : x_; }

  // Neighbour j's public copy after its message of this step: CHOCO adds the decoded difference;
  // uncompressed, the message is the model itself (kept in `models`, reserved, for this step).
  const Vector& public_copy(NodeId j, const Payload& payload, std::vector<Vector>& models) {
    if (!settings_.choco) return models.emplace_back(codec_->decode(payload, x_.size()));
    Vector& copy = copies_.at(j);
    copy += codec_->decode(payload, x_.size());
    return copy;
  }

  void end_round(Context& ctx) {
    observer_->report(ctx, round_, id_, x_, loss_);
    if (round_ == settings_.rounds) return;
    ++round_;
    train(ctx);
  }

  const LearningTask& task_;
  NodeId id_;
  DpsgdSettings settings_;
  Vector x_;
  std::shared_ptr<GraphSchedule> graphs_;
  std::shared_ptr<RoundObserver> observer_;
  std::unique_ptr<Compressor> codec_;
  std::map<NodeId, Vector> copies_;  // CHOCO: x̂_j of itself and its in-neighbours
  std::unique_ptr<Aggregator> aggregator_;  // aggregation robust: this node's own (rules may keep state)
  std::shared_ptr<const Attack> attack_;
  Vector momentum_;                         // MoNNA's m_i; empty until the first step
  int round_ = 1, step_ = 0;
  double loss_ = 0.0;
  std::map<std::pair<int, int>, Inbox> inbox_;
};

void read_robustness(Section& protocol, const ProtocolParts& parts, DpsgdSettings& settings) {
  using Aggregation = DpsgdSettings::Aggregation;
  const auto kind = protocol.text("aggregation");
  settings.aggregation = kind == "mix" ? Aggregation::kMix : kind == "robust" ? Aggregation::kRobust : Aggregation::kNna;
  if (settings.aggregation == Aggregation::kNna) settings.f = protocol.integer<int>("f");
  settings.wait_for_all = protocol.text("wait_for") == "all";
  if (!settings.wait_for_all && settings.aggregation != Aggregation::kNna)
    protocol.fail("wait_for", "n_minus_f is MoNNA's mode (card 6.1): it needs aggregation: nna, whose f it leaves out");
  settings.momentum = protocol.number("momentum");
  if (settings.momentum >= 1.0) protocol.fail("momentum", "must be in [0, 1): with 1 the gradient never enters");
  // (`mean`, the default, is what a resolved config states: it is W mixing.)
  if (settings.aggregation != Aggregation::kRobust && !parts.aggregator->is_weighted_mean())
    throw ConfigError("aggregator.kind", "dpsgd uses the aggregator only with protocol.aggregation: robust");
  // CHOCO nodes hold public copies that every message shifts for good: a robust rule would judge
  // stale, compressed copies, and one corrupted message would poison a copy forever.
  if (settings.choco && settings.aggregation != Aggregation::kMix)
    protocol.fail("aggregation", "robust aggregation needs the neighbours' models; with a lossy compressor dpsgd gossips "
                                 "CHOCO differences: use compressor.kind none");
  if (settings.choco && parts.attack)
    throw ConfigError("attack.kind", "Byzantine dpsgd is simulated on uncompressed gossip: use compressor.kind none");
  if (settings.variance_correction && settings.aggregation != Aggregation::kMix)
    protocol.fail("variance_correction", "rescales a W mix; it does not apply to aggregation " + kind);
}

}  // namespace

NodeSet make_dpsgd(Section& protocol, ProtocolParts& parts) {
  DpsgdSettings settings;
  settings.rounds = parts.rounds;
  settings.gossip_steps = protocol.integer<int>("gossip_steps");
  settings.communicate_every = protocol.integer<int>("communicate_every");
  settings.local_steps = protocol.integer("local_steps");
  settings.variance_correction = protocol.flag("variance_correction");
  const bool independent_init = protocol.flag("independent_init");
  const int n = static_cast<int>(parts.task->partition.size());
  std::optional<MergeSchedule> merge;
  if (protocol.has("merge")) merge = read_merge(protocol.child("merge"), n);
  read_compression(protocol, *parts.compressor_section, settings);
  read_robustness(protocol, parts, settings);
  if (settings.choco && (merge || parts.topology->time_varying()))
    throw ConfigError(merge ? protocol.path("merge") : parts.topology_section->path("kind"),
                      "compressed gossip (CHOCO) keeps copies of fixed neighbours' models: it needs a static topology "
                      "and no merge schedule");
  auto graphs = std::make_shared<GraphSchedule>(parts.topology, mixing_rule(*parts.topology_section), n, parts.rounds,
                                                parts.seed, merge);
  auto observer = std::make_shared<RoundObserver>(*parts.task, n, parts.rounds, parts.eval_every, parts.eval_nodes,
                                                 parts.seed, parts.attack ? parts.attack->attackers() : std::vector<NodeId>{});
  const Graph base = parts.topology->build(n, parts.seed);
  if (!base.connected()) throw ConfigError("topology.kind", "the graph is not connected: gossip cannot reach consensus");
  if (!settings.wait_for_all && (merge || parts.topology->time_varying()))
    protocol.fail("wait_for", "n_minus_f needs a fixed quorum n_i - f per node: a static topology and no merge schedule");
  if (settings.aggregation == DpsgdSettings::Aggregation::kNna && !merge && !parts.topology->time_varying())
    for (const auto& in : graphs->at(1).graph.neighbours) {
      if (static_cast<std::size_t>(settings.f) > in.size())
        protocol.fail("f", std::to_string(settings.f) + " leaves no model to average at a node with " +
                               std::to_string(in.size()) + " neighbours (q = neighbours + 1 - f)");
      if (!settings.wait_for_all && static_cast<std::size_t>(2 * settings.f) > in.size())
        protocol.fail("f", std::to_string(settings.f) + " with wait_for: n_minus_f leaves no model to average at a node with " +
                               std::to_string(in.size()) + " neighbours (it hears n_i - f and averages n_i - 2f, n_i = neighbours + 1)");
    }
  if (!merge) observer->set_constant("spectral_gap", spectral_gap(graphs->at(1).w));
  // Public copies start equal everywhere: at the shared initial model, or, when every node draws its
  // own, at zero (the paper's choice; a node cannot know its neighbours' models before they send).
  const Vector copy0 = independent_init ? Vector::Zero(parts.initial_model.size()) : parts.initial_model;
  // One aggregator per node, from the same section (centered_clip remembers its last output).
  const auto aggregator = [&]() -> std::unique_ptr<Aggregator> {
    if (settings.aggregation != DpsgdSettings::Aggregation::kRobust) return nullptr;
    return parts.new_aggregator();
  };
  NodeSet set;
  set.probe = observer;
  for (NodeId i = 0; i < n; ++i) {
    Rng init(parts.seed, i, Purpose::kModelInit);  // each node's own initialisation, if asked for
    std::map<NodeId, Vector> copies;
    if (settings.choco) {
      copies.emplace(i, copy0);
      for (NodeId j : graphs->at(1).graph.neighbours[static_cast<std::size_t>(i)]) copies.emplace(j, copy0);
    }
    set.nodes.push_back(std::make_unique<DpsgdNode>(*parts.task, i, settings,
                                                    independent_init ? parts.task->model->init(init) : parts.initial_model,
                                                    graphs, observer, parts.uplink->clone(), std::move(copies),
                                                    aggregator(), parts.attack));
  }
  return set;
}

void register_dpsgd(ProtocolRegistry& r) {
  r.add(PluginSpec("dpsgd", "decentralized SGD: local training, then Q gossip steps with the mixing matrix W")
            .integer("gossip_steps", 1, Range::between(0, 1000), "mixing steps Q per round (0: local training only)")
            .integer("communicate_every", 1, Range::at_least(1), "gossip every this many rounds", "rounds")
            .integer("local_steps", 0, Range::at_least(0), "minibatches per round; 0: train.local_epochs epochs")
            .flag("variance_correction", false, "rescale mixed models to keep their variance (card 9.6)")
            .flag("independent_init", false, "each node draws its own initial model")
            .number("consensus_lr", 1.0, Range::above_until(0, 1), "CHOCO consensus step gamma (required with a compressor)")
            .choice("aggregation", "mix", {"mix", "robust", "nna"}, "W mixing; the aggregator over the neighbours' models; or NNA")
            .integer("f", 0, Range::at_least(0), "Byzantine neighbours NNA tolerates (aggregation: nna)")
            .choice("wait_for", "all", {"all", "n_minus_f"}, "wait for every neighbour, or the first n_i - f (MoNNA)")
            .number("momentum", 0.0, Range::between(0, 1), "local heavy-ball momentum (< 1)")
            .section(PluginSpec("merge", "a schedule of the merge radius over the rounds (card 9.7), instead of the topology")
                         .choice("schedule", "fixed", {"fixed", "truncate", "window", "linear", "cosine"}, "how the radius moves")
                         .number("r_start", 0.2, Range::at_least(0), "radius at the start (<= nodes - 1)")
                         .number("r_end", 1.0, Range::at_least(0), "radius at the end (<= nodes - 1)")
                         .computed_default("nodes - 1")
                         .number("point", 0.99, Range::between(0, 1), "truncate: the fraction of the rounds where it switches")
                         .number("window", 0.05, Range::above_until(0, 1), "window: the fraction of the rounds it lasts"))
            .with_traits(ProtocolTraits{.sections = {"topology", "aggregator", "compressor"},
                                        .attacks = true,
                                        // Its public model copies already carry what compression left out.
                                        .uplink = {.feedback = false, .why = "compresses gossip the CHOCO way"}}),
        [](Section& s, ProtocolParts& parts) { return std::make_unique<NodeSet>(make_dpsgd(s, parts)); });
}

}  // namespace starling
