// D-PSGD (Lian et al., 2017) as message handlers, with multiple gossip steps (card 8.5) and
// sparse communication (communicate_every).
//
// Each round every node trains locally, then, in rounds where it communicates, runs Q gossip
// steps: it sends its model to its out-neighbours and, once the models of all its in-neighbours
// for that step have arrived, replaces its model by sum_j W_ij x_j (j = itself and in-neighbours,
// in id order). Models of a later step or round that arrive early wait in an inbox.
#include <map>

#include "learning/training.h"
#include "learning/variance_correction.h"
#include "nodes/observer.h"
#include "nodes/protocol.h"

namespace starling {

namespace {

// The graph and mixing matrix of each round, shared by all nodes (computed once per round).
class GraphSchedule {
 public:
  struct Round {
    Graph graph;
    MixingMatrix w;
    std::vector<std::vector<NodeId>> out;
  };
  GraphSchedule(std::shared_ptr<const Topology> topology, MixingRule rule, int nodes, std::uint64_t seed)
      : topology_(std::move(topology)), rule_(rule), nodes_(nodes), seed_(seed) {}

  const Round& at(int round) {
    const int key = topology_->time_varying() ? round : 1;
    auto it = cache_.find(key);
    if (it == cache_.end()) {
      Round r{topology_->at_round(nodes_, key, seed_), {}, {}};
      r.w = rule_(r.graph);
      r.out = r.graph.out_neighbours();
      while (cache_.size() > 8) cache_.erase(cache_.begin());  // nodes are at most a few rounds apart
      it = cache_.emplace(key, std::move(r)).first;
    }
    return it->second;
  }

 private:
  std::shared_ptr<const Topology> topology_;
  MixingRule rule_;
  int nodes_;
  std::uint64_t seed_;
  std::map<int, Round> cache_;
};

struct DpsgdSettings {
  int rounds = 1;
  int gossip_steps = 1;       // Q
  int communicate_every = 1;  // gossip only in rounds divisible by this
  std::int64_t local_steps = 0;  // minibatches per round; 0 = train.local_epochs epochs
  bool variance_correction = false;  // rescale tensors after mixing (card 4)
};

class DpsgdNode final : public Node {
 public:
  DpsgdNode(const LearningTask& task, NodeId id, const DpsgdSettings& settings, const Vector& initial,
            std::shared_ptr<GraphSchedule> graphs, std::shared_ptr<RoundObserver> observer,
            std::unique_ptr<Compressor> codec)
      : task_(task), id_(id), settings_(settings), x_(initial), graphs_(std::move(graphs)),
        observer_(std::move(observer)), codec_(std::move(codec)) {}

  void on_start(Context& ctx) override { train(ctx); }

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
    if (m.kind != MessageKind::kGossip || m.round < round_ || (m.round == round_ && m.step < step_))
      throw Error("dpsgd node " + std::to_string(id_) + ": unexpected " + to_string(m.kind) + " message for round " +
                  std::to_string(m.round) + " step " + std::to_string(m.step));
    inbox_[{m.round, m.step}].emplace(m.sender, std::move(m.payload));
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
                  auto optimizer = task_.optimizer->clone();
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
    m.set_payload(codec_->encode(x_, ctx.rng(Purpose::kCompression)));  // one encoding for every receiver
    for (NodeId j : graphs_->at(round_).out[static_cast<std::size_t>(id_)]) {
      m.receiver = j;
      ctx.send(m);
    }
  }

  void try_mix(Context& ctx) {
    while (step_ > 0) {
      const auto& round = graphs_->at(round_);
      const auto key = std::pair{round_, step_};
      auto& got = inbox_[key];
      if (got.size() < round.graph.neighbours[static_cast<std::size_t>(id_)].size()) return;
      Vector mixed = Vector::Zero(x_.size());
      std::vector<Vector> received;
      received.reserve(got.size());
      for (const auto& [j, w] : round.w.rows[static_cast<std::size_t>(id_)]) {  // ascending j, itself included
        if (j == id_) {
          mixed += static_cast<float>(w) * x_;
        } else {
          received.push_back(codec_->decode(*got.at(j), x_.size()));
          mixed += static_cast<float>(w) * received.back();
        }
      }
      if (settings_.variance_correction) {
        std::vector<const Vector*> views;
        for (const auto& r : received) views.push_back(&r);
        correct_variance(mixed, views, task_.model->tensors());
      }
      x_ = std::move(mixed);
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
  int round_ = 1, step_ = 0;
  double loss_ = 0.0;
  std::map<std::pair<int, int>, std::map<NodeId, std::shared_ptr<const Payload>>> inbox_;
};

}  // namespace

NodeSet make_dpsgd(Section& protocol, ProtocolParts& parts) {
  DpsgdSettings settings;
  settings.rounds = parts.rounds;
  settings.gossip_steps = static_cast<int>(protocol.get_int("gossip_steps", 1, 0, 1000));
  settings.communicate_every = static_cast<int>(protocol.get_int("communicate_every", 1, 1));
  settings.local_steps = protocol.get_int("local_steps", 0, 0);
  settings.variance_correction = protocol.get<bool>("variance_correction", false);
  const bool independent_init = protocol.get<bool>("independent_init", false);
  const int n = static_cast<int>(parts.task->partition.size());
  auto graphs = std::make_shared<GraphSchedule>(parts.topology, mixing_rule(*parts.topology_section), n, parts.seed);
  auto observer = std::make_shared<RoundObserver>(*parts.task, n, parts.rounds, parts.eval_every, parts.eval_nodes, parts.seed);
  const auto& first = graphs->at(1);
  if (!first.graph.connected()) throw ConfigError("topology.kind", "the graph is not connected: gossip cannot reach consensus");
  observer->set_constant("spectral_gap", spectral_gap(first.w));
  NodeSet set;
  for (NodeId i = 0; i < n; ++i) {
    Rng init(parts.seed, i, Purpose::kModelInit);  // each node's own initialisation, if asked for
    set.nodes.push_back(std::make_unique<DpsgdNode>(*parts.task, i, settings,
                                                    independent_init ? parts.task->model->init(init) : parts.initial_model,
                                                    graphs, observer, parts.uplink->clone()));
  }
  return set;
}

}  // namespace starling
