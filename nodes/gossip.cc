// Asynchronous gossip learning (Ormandi et al.; card 4 for variance correction).
//
// Every node wakes on its own Poisson clock. Awake and idle, it trains a copy of its model; when
// the training job completes, the result becomes its model and it pushes the model to one random
// out-neighbour. A node merges every model it receives (plain or age-weighted average, optionally
// variance-corrected); models that arrive while it trains wait until the job completes, so a job's
// inputs never change under it. Slow nodes train less often; slow links deliver later.
// "Rounds" are periods of virtual time: at the end of each, every node reports its current model
// to the round observer.
//
// Attacks (`attack:`): the attackers train and merge like honest nodes, but what they push to an
// honest node is corrupted at the sender: sign_flip -scale x, scaled scale x, gaussian noise, ALIE
// and IPM computed from what an attacker sees without any omniscience, the latest model each
// honest in-neighbour pushed to it (its own model before any arrived). To each other they push
// their honest models, so their own models stay those of honest training. The age in the header
// stays honest.
#include <deque>
#include <map>

#include "learning/training.h"
#include "learning/variance_correction.h"
#include "nodes/observer.h"
#include "nodes/protocol.h"

namespace starling {

namespace {

struct GossipSettings {
  int rounds = 1;
  double wake_rate = 1.0;        // wakes per virtual second (Poisson)
  SimTime round_length = kNanosPerSecond;
  bool age_weighted = true;      // merge weights by model age (number of training steps behind it)
  bool variance_correction = false;
  std::int64_t local_steps = 1;  // minibatches per wake (0: train.local_epochs epochs)
};

constexpr int kWakeTag = 0;  // timer tags > 0 are the observer's round ends

class GossipNode final : public Node {
 public:
  GossipNode(const LearningTask& task, NodeId id, const GossipSettings& settings, Vector initial,
             std::shared_ptr<const Graph> graph, std::shared_ptr<RoundObserver> observer, std::unique_ptr<Compressor> codec,
             std::shared_ptr<const Attack> attack)
      : task_(task), id_(id), settings_(settings), x_(std::move(initial)), graph_(std::move(graph)),
        out_(graph_->out_neighbours()[static_cast<std::size_t>(id)]), observer_(std::move(observer)),
        codec_(std::move(codec)), attack_(attack && attack->is_attacker(id) ? std::move(attack) : nullptr) {}

  void on_start(Context& ctx) override {
    if (attack_) ctx.metrics().metric(0, ctx.now(), id_, "byzantine", 1.0);
    schedule_wake(ctx);
    ctx.set_timer(settings_.round_length, 1);
  }

  void on_timer(Context& ctx, int tag) override {
    if (tag != kWakeTag) {  // end of round `tag`
      observer_->report(ctx, tag, id_, x_, loss_);
      if (tag < settings_.rounds) ctx.set_timer(settings_.round_length, tag + 1);
      return;
    }
    schedule_wake(ctx);
    if (training_) return;  // still busy with the previous wake's job
    training_ = true;
    job_x_ = x_;
    const auto& indices = task_.partition[static_cast<std::size_t>(id_)];
    const auto n = static_cast<std::int64_t>(indices.size());
    const std::int64_t samples = settings_.local_steps > 0 ? samples_in_batches(n, task_.batch_size, settings_.local_steps)
                                                           : std::int64_t{task_.local_epochs} * n;
    const int epochs = settings_.local_steps > 0 ? 1 << 30 : task_.local_epochs;
    ctx.compute(samples,
                [this, &indices, epochs, &shuffle = ctx.rng(Purpose::kDataShuffle)] {
                  auto optimizer = task_.optimizer->clone();
                  job_loss_ = train_local(*task_.model, *optimizer, *task_.train, indices, epochs, task_.batch_size,
                                          shuffle, job_x_, settings_.local_steps)
                                  .mean_loss;
                },
                0);
  }

  void on_compute_done(Context& ctx, int) override {
    training_ = false;
    x_ = std::move(job_x_);
    loss_ = job_loss_;
    ++age_;
    while (!waiting_.empty()) {
      merge(waiting_.front().first, waiting_.front().second);
      waiting_.pop_front();
    }
    if (out_.empty()) return;
    Message m;
    m.kind = MessageKind::kGossip;
    m.round = static_cast<std::int32_t>(ctx.now() / settings_.round_length) + 1;
    m.num_samples = age_;  // the model's age travels in the header
    m.receiver = out_[ctx.rng(Purpose::kSampling).below(out_.size())];
    m.set_payload(codec_->encode(attack_ && !attack_->is_attacker(m.receiver) ? forged() : x_,
                                 ctx.rng(Purpose::kCompression)));
    ctx.send(std::move(m));
  }

  void on_message(Context&, Message&& m) override {
    if (m.kind != MessageKind::kGossip)
      throw Error("gossip node " + std::to_string(id_) + ": unexpected " + to_string(m.kind) + " message");
    Vector received = codec_->decode(m.payload_bytes(), x_.size());
    if (attack_ && attack_->omniscient() && !attack_->is_attacker(m.sender)) heard_.insert_or_assign(m.sender, received);
    if (training_) waiting_.emplace_back(std::move(received), m.num_samples);
    else merge(received, m.num_samples);
  }

 private:
  void schedule_wake(Context& ctx) {
    ctx.set_timer(from_seconds(ctx.rng(Purpose::kSampling).exponential(settings_.wake_rate)), kWakeTag);
  }

  // What this attacker pushes to an honest node instead of x_ (its `pushes_`-th push).
  Vector forged() {
    Vector sent = x_;
    Attack::Updates updates{{id_, &sent}};
    for (auto& [sender, model] : heard_) updates.emplace_back(sender, &model);  // read only
    attack_->corrupt(pushes_++, updates);
    return sent;
  }

  void merge(const Vector& other, std::int64_t other_age) {
    float w = 0.5f;
    if (settings_.age_weighted && age_ + other_age > 0)
      w = static_cast<float>(static_cast<double>(other_age) / static_cast<double>(age_ + other_age));
    x_ = (1.0f - w) * x_ + w * other;
    if (settings_.variance_correction) {
      const Vector* views[] = {&other};
      correct_variance(x_, views, task_.model->tensors());
    }
    age_ = std::max(age_, other_age);
  }

  const LearningTask& task_;
  NodeId id_;
  GossipSettings settings_;
  Vector x_, job_x_;
  std::shared_ptr<const Graph> graph_;
  std::vector<NodeId> out_;
  std::shared_ptr<RoundObserver> observer_;
  std::unique_ptr<Compressor> codec_;
  std::shared_ptr<const Attack> attack_;  // set on attackers only
  std::map<NodeId, Vector> heard_;        // attacker: the latest model of each honest in-neighbour
  std::uint64_t pushes_ = 0;
  bool training_ = false;
  std::int64_t age_ = 0;
  double loss_ = 0.0, job_loss_ = 0.0;
  std::deque<std::pair<Vector, std::int64_t>> waiting_;
};

}  // namespace

NodeSet make_gossip(Section& protocol, ProtocolParts& parts) {
  GossipSettings settings;
  settings.rounds = parts.rounds;
  settings.wake_rate = protocol.number("wake_rate");
  settings.round_length = from_seconds(protocol.number("round_seconds", 1.0 / settings.wake_rate));
  settings.age_weighted = protocol.text("averaging") == "age_weighted";
  settings.variance_correction = protocol.flag("variance_correction");
  settings.local_steps = protocol.integer("local_steps");
  const bool independent_init = protocol.flag("independent_init");
  const int n = static_cast<int>(parts.task->partition.size());
  if (parts.topology->time_varying())
    throw ConfigError("topology.kind", "gossip runs on a static graph; time-varying topologies need dpsgd");
  auto graph = std::make_shared<const Graph>(parts.topology->build(n, parts.seed));
  if (!graph->connected()) throw ConfigError("topology.kind", "the graph is not connected: gossip cannot reach consensus");
  auto observer = std::make_shared<RoundObserver>(*parts.task, n, parts.rounds, parts.eval_every, parts.eval_nodes, parts.seed,
                                                 parts.attack ? parts.attack->attackers() : std::vector<NodeId>{});
  NodeSet set;
  set.probe = observer;
  for (NodeId i = 0; i < n; ++i) {
    Rng init(parts.seed, i, Purpose::kModelInit);
    set.nodes.push_back(std::make_unique<GossipNode>(*parts.task, i, settings,
                                                     independent_init ? parts.task->model->init(init) : parts.initial_model,
                                                     graph, observer, parts.uplink->clone(), parts.attack));
  }
  return set;
}

void register_gossip(ProtocolRegistry& r) {
  r.add(PluginSpec("gossip", "asynchronous gossip learning: Poisson wake-ups, train, push to a random neighbour, merge")
            .number("wake_rate", 1.0, Range::above_until(0, 1e9), "Poisson wake-ups per node per second", "1/s")
            .number("round_seconds", 1.0, Range::above_until(0, 1e9), "virtual time between measurements (a \"round\")", "s")
            .computed_default("1 / wake_rate")
            .choice("averaging", "age_weighted", {"age_weighted", "plain"}, "merge weighted by model ages, or plain mean")
            .flag("variance_correction", false, "rescale merged models to keep their variance (card 9.6)")
            .integer("local_steps", 1, Range::at_least(0), "minibatches per wake-up; 0: train.local_epochs epochs")
            .flag("independent_init", false, "each node draws its own initial model")
            .with_traits(ProtocolTraits{.sections = {"topology", "compressor"},
                                        .attacks = true,
                                        .uplink = {.kind = CodecNeed::Kind::kDense,
                                                   .feedback = false,
                                                   .why = "sends whole models on gossip edges (compressed gossip is supported for dpsgd)"}}),
        [](Section& s, ProtocolParts& parts) { return std::make_unique<NodeSet>(make_gossip(s, parts)); });
}

}  // namespace starling
