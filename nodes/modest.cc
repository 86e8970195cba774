// MoDeST: decentralized client sampling (de Vos et al., card 2), static population with crashes.
//
// Round r: every node can compute order(r), the active nodes sorted by a hash of (seed, round,
// node). The first `a` available nodes of it aggregate and the first `s` train. "Available" is
// established by an availability walk: ping the first candidates, replace each one that does not
// answer within ping_timeout by the next in the order. Trainers of round r train the model they
// received (round 1: the initial model), walk order(r) for the aggregators and send them the model
// with their view; an aggregator averages once floor(sf * s) models arrived (or, at
// aggregation_timeout, at least liveness_min; with fewer it restarts the round with a fresh
// sample of available nodes), acknowledges the contributors, walks order(r + 1) for the next
// sample and sends it the average. A trainer that gets no ACK within ack_timeout
// marks that aggregator as gone and resends to the next available one; a trainer whose
// contribution was acknowledged but that hears of no later round within stall_timeout (its
// aggregator crashed) starts the next round itself. Views (the last round each
// node was seen active) travel with every model and merge by maximum; nodes silent for
// inactivity_threshold rounds leave the order. Every control message costs its header.
//
// Attacks (`attack:`): Byzantine nodes attack as trainers. They train honestly, and an aggregator
// replaces their trained models by what they send just before it averages (as FedAvg's server
// does): sign_flip -scale x, scaled scale x, gaussian noise, ALIE and IPM from the honest models of
// that aggregation. As aggregators and in the sampling protocol they behave honestly (MoDeST has no
// defence against a Byzantine aggregator: it alone picks the next model).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <set>

#include "learning/training.h"
#include "nodes/modest.h"
#include "nodes/protocol.h"

namespace starling {

void merge_view_entry(ModestViewEntry& mine, const ModestViewEntry& other) {
  if (other.index > mine.index) {
    mine = other;
  } else if (other.index == mine.index) {
    mine.round = std::max(mine.round, other.round);
    mine.present = mine.present && other.present;
  }
}

std::vector<NodeId> modest_order(std::uint64_t seed, int round, const std::vector<ModestViewEntry>& view, NodeId self,
                                 int inactivity_threshold) {
  std::vector<std::pair<std::uint64_t, NodeId>> keyed;
  for (NodeId i = 0; i < static_cast<NodeId>(view.size()); ++i) {
    const auto& e = view[static_cast<std::size_t>(i)];
    if (i != self && (!e.present || e.round < round - inactivity_threshold)) continue;  // gone, or silent too long
    keyed.emplace_back(mix64(mix64(seed ^ mix64(static_cast<std::uint64_t>(round))) + static_cast<std::uint64_t>(i)), i);
  }
  std::sort(keyed.begin(), keyed.end());
  std::vector<NodeId> out;
  for (const auto& [key, i] : keyed) out.push_back(i);
  return out;
}

namespace {

struct ModestSettings {
  int rounds = 1;
  int sample = 10;          // s
  int aggregators = 1;      // a
  double success_fraction = 1.0;
  int liveness_min = 3;
  SimTime ping_timeout = 5 * kNanosPerSecond;
  SimTime aggregation_timeout = 300 * kNanosPerSecond;
  SimTime ack_timeout = 60 * kNanosPerSecond;
  SimTime stall_timeout = 600 * kNanosPerSecond;
  int inactivity_threshold = 50;
  std::int64_t local_steps = 5;
  double crash_fraction = 0.0;  // nodes that stop responding at crash_at
  SimTime crash_at = 0;
  double join_fraction = 0.0;   // nodes absent at the start that join at join_at
  SimTime join_at = 0;
  double leave_fraction = 0.0;  // nodes that announce their leave and go at leave_at
  SimTime leave_at = 0;
};

// The run's probe: the first aggregate an aggregator reports for a round is that round's record
// (values: participants, train loss); later ones of the same round are ignored.
class ModestRecorder final : public Probe {
 public:
  ModestRecorder(const LearningTask& task, int rounds) : task_(task), rounds_(rounds) {}

  void record(Context& ctx, Observation o) override {
    if (o.round < 1 || o.round > rounds_ || o.model.size() != task_.model->num_params() || o.values.size() != 2)
      throw Error("modest recorder: an observation of round " + std::to_string(o.round) + " with " +
                  std::to_string(o.model.size()) + " parameters and " + std::to_string(o.values.size()) +
                  " values (expected a round of the run, the model's " + std::to_string(task_.model->num_params()) +
                  " parameters, participants and loss)");
    if (o.round <= recorded) return;  // another aggregator of the same round got there first
    recorded = o.round;
    auto& sink = ctx.metrics();
    const auto eval = evaluate(*task_.model, o.model, *task_.test);
    sink.metric(o.round, ctx.now(), kNoNode, "participants", o.values[0]);
    sink.metric(o.round, ctx.now(), kNoNode, "train_loss", o.values[1]);
    sink.metric(o.round, ctx.now(), kNoNode, "test_accuracy", eval.accuracy);
    sink.metric(o.round, ctx.now(), kNoNode, "test_loss", eval.loss);
    ctx.finish_round(o.round);
    if (o.round == rounds_) ctx.stop();
  }

  // The newest recorded round. A joiner reads it (the simulation's probe stands in for the peer
  // that lets it in), so a deployment refuses protocol.join: its probe is in another process.
  int recorded = 0;

 private:
  const LearningTask& task_;
  int rounds_;
};

// Shared facts of the run: who crashes when (the simulation's fault injection, not protocol
// knowledge), and the probe that records each round's aggregate once.
struct ModestWorld {
  const LearningTask* task = nullptr;
  std::shared_ptr<const Attack> attack;  // null: every node is honest
  ModestSettings settings;
  std::uint64_t seed = 0;
  int nodes = 0;
  std::vector<bool> crashes, joins, leaves;
  std::shared_ptr<ModestRecorder> recorder;

  // Not taking part at `now`: crashed, not joined yet, or left.
  bool absent(NodeId i, SimTime now) const {
    const auto k = static_cast<std::size_t>(i);
    return (crashes[k] && now >= settings.crash_at) || (joins[k] && now < settings.join_at) ||
           (leaves[k] && now >= settings.leave_at);
  }
};

// Model and view in one payload: the model's encoding, then one 12-byte entry per node.
static_assert(sizeof(ModestViewEntry) == 12);
Payload pack(Payload model, const std::vector<ModestViewEntry>& view) {
  const std::size_t at = model.size();
  model.resize(at + view.size() * sizeof(ModestViewEntry));
  std::memcpy(model.data() + at, view.data(), view.size() * sizeof(ModestViewEntry));
  return model;
}

class ModestNode final : public Node {
 public:
  ModestNode(std::shared_ptr<ModestWorld> world, NodeId id, Vector initial, std::unique_ptr<Compressor> codec)
      : world_(std::move(world)), s_(world_->settings), id_(id), x_(std::move(initial)), codec_(std::move(codec)),
        view_(static_cast<std::size_t>(world_->nodes)) {
    for (std::size_t i = 0; i < view_.size(); ++i) view_[i].present = world_->joins[i] ? 0 : 1;  // joiners come later
  }

  void on_start(Context& ctx) override {
    if (world_->attack && world_->attack->is_attacker(id_)) ctx.metrics().metric(0, ctx.now(), id_, "byzantine", 1.0);
    if (world_->joins[static_cast<std::size_t>(id_)]) after(ctx, s_.join_at, [this](Context& c) { announce(c, true); });
    if (world_->leaves[static_cast<std::size_t>(id_)])  // announce just before going
      after(ctx, std::max<SimTime>(s_.leave_at - 1, 0), [this](Context& c) { announce(c, false); });
    if (world_->absent(id_, ctx.now())) return;
    const auto first = order(1);  // bootstrap: everybody present is up at time 0
    if (std::find(first.begin(), first.begin() + std::min<std::size_t>(first.size(), s_.sample), id_) !=
        first.begin() + std::min<std::size_t>(first.size(), s_.sample))
      train(ctx, 1);
  }

  void on_timer(Context& ctx, int tag) override {
    if (world_->absent(id_, ctx.now()) && !(world_->joins[static_cast<std::size_t>(id_)] && ctx.now() >= s_.join_at - 1))
      return;
    auto it = timers_.find(tag);
    if (it == timers_.end()) return;
    auto action = std::move(it->second);
    timers_.erase(it);
    action(ctx);
  }

  void on_compute_done(Context& ctx, int round) override {
    if (world_->absent(id_, ctx.now()) || round != r_hat_) return;  // crashed, or overtaken by a newer round
    x_ = std::move(job_x_);
    auto& own = view_[static_cast<std::size_t>(id_)];
    own.round = std::max(own.round, round);
    // The contribution is fixed now, even if a newer round's model arrives during the walk.
    contribute(ctx, round, std::make_shared<const Payload>(payload(ctx)), {});
  }

  void on_message(Context& ctx, Message&& m) override {
    if (world_->absent(id_, ctx.now())) return;  // a crashed node answers nothing
    switch (m.kind) {
      case MessageKind::kPing: {
        Message pong;
        pong.kind = MessageKind::kPong;
        pong.round = m.round;
        pong.receiver = m.sender;
        ctx.send(std::move(pong));
        break;
      }
      case MessageKind::kPong: on_pong(ctx, m.round, m.sender); break;
      case MessageKind::kTrained: on_trained(ctx, std::move(m)); break;
      case MessageKind::kAggregated: {
        merge_view(m);
        if (m.round > r_hat_) {
          x_ = codec_->decode(model_bytes(m), x_.size());
          train(ctx, m.round);
        }
        break;
      }
      case MessageKind::kMembership: {
        const auto& p = m.payload_bytes();
        if (p.size() != sizeof(std::int32_t) + sizeof(ModestViewEntry)) throw Error("modest: malformed membership message");
        std::int32_t who;
        ModestViewEntry entry;
        std::memcpy(&who, p.data(), sizeof who);
        std::memcpy(&entry, p.data() + sizeof who, sizeof entry);
        if (who < 0 || who >= world_->nodes) throw Error("modest: membership message about unknown node");
        if (entry.present) pending_joins_.emplace_back(who, entry);  // not in the very next sample
        else merge_view_entry(view_[static_cast<std::size_t>(who)], entry);
        break;
      }
      case MessageKind::kAck: {
        const bool first_ack = acked_.lower_bound({m.round, 0}) == acked_.upper_bound({m.round, world_->nodes});
        acked_.insert({m.round, m.sender});
        if (first_ack) watch_for_stall(ctx, m.round);
        break;
      }
      default:
        throw Error("modest node " + std::to_string(id_) + ": unexpected " + to_string(m.kind) + " message");
    }
  }

 private:
  // ------------------------------------------------------------- views and sample order
  std::vector<NodeId> order(int round) const {
    return modest_order(world_->seed, round, view_, id_, s_.inactivity_threshold);
  }

  // This node's model and view; joins heard since the last send take effect after this one.
  Payload payload(Context& ctx) {
    Payload out = pack(codec_->encode(x_, ctx.rng(Purpose::kCompression)), view_);
    for (const auto& [who, entry] : pending_joins_) merge_view_entry(view_[static_cast<std::size_t>(who)], entry);
    pending_joins_.clear();
    return out;
  }
  Payload model_bytes(const Message& m) const {
    const auto& p = m.payload_bytes();
    const std::size_t view_bytes = view_.size() * sizeof(ModestViewEntry);
    if (p.size() < view_bytes) throw Error("modest: message without a view");
    return Payload(p.begin(), p.end() - static_cast<std::ptrdiff_t>(view_bytes));
  }
  void merge_view(const Message& m) {
    const auto& p = m.payload_bytes();
    const std::size_t view_bytes = view_.size() * sizeof(ModestViewEntry);
    if (p.size() < view_bytes) throw Error("modest: message without a view");
    std::vector<ModestViewEntry> other(view_.size());
    std::memcpy(other.data(), p.data() + p.size() - view_bytes, view_bytes);
    for (std::size_t i = 0; i < view_.size(); ++i) merge_view_entry(view_[i], other[i]);
  }

  int newest_round() const {
    int newest = 0;
    for (const auto& e : view_) newest = std::max(newest, e.round);
    return newest;
  }

  // Join (present) or graceful leave (absent): bump the membership index and tell up to 10 s
  // random peers this node believes present. A joiner takes the current round from the peer
  // that lets it in (the simulation's probe stands in for that peer).
  void announce(Context& ctx, bool join) {
    auto& own = view_[static_cast<std::size_t>(id_)];
    own.index += 1;
    own.present = join ? 1 : 0;
    own.round = std::max(own.round, join ? world_->recorder->recorded : r_hat_);
    std::vector<NodeId> peers;
    for (NodeId i = 0; i < world_->nodes; ++i)
      if (i != id_ && view_[static_cast<std::size_t>(i)].present) peers.push_back(i);
    Rng& rng = ctx.rng(Purpose::kChurn);
    const auto count = std::min<std::size_t>(peers.size(), static_cast<std::size_t>(10 * s_.sample));
    Payload bytes(sizeof(std::int32_t) + sizeof(ModestViewEntry));
    const std::int32_t who = id_;
    std::memcpy(bytes.data(), &who, sizeof who);
    std::memcpy(bytes.data() + sizeof who, &own, sizeof own);
    Message m;
    m.kind = MessageKind::kMembership;
    m.round = own.round;
    m.set_payload(std::move(bytes));
    for (auto k : rng.sample_without_replacement(static_cast<std::int32_t>(peers.size()), static_cast<std::int32_t>(count))) {
      m.receiver = peers[static_cast<std::size_t>(k)];
      ctx.send(m);
    }
  }

  // ------------------------------------------------------------- availability walk
  struct Walk {
    std::vector<NodeId> candidates;
    std::size_t next = 0;
    int want = 0;
    std::set<NodeId> waiting;
    std::vector<NodeId> answered;
    std::function<void(Context&, std::vector<NodeId>)> done;
  };

  void walk(Context& ctx, int round, int want, std::set<NodeId> exclude,
            std::function<void(Context&, std::vector<NodeId>)> done) {
    const int id = next_walk_++;
    Walk& w = walks_[id];
    for (NodeId i : order(round))
      if (!exclude.count(i)) w.candidates.push_back(i);
    w.want = std::min<int>(want, static_cast<int>(w.candidates.size()));
    w.done = std::move(done);
    for (int k = 0; k < w.want; ++k) ping_next(ctx, id);
    maybe_finish(ctx, id);
  }

  void ping_next(Context& ctx, int walk_id) {
    Walk& w = walks_.at(walk_id);
    if (w.next >= w.candidates.size()) return;
    const NodeId target = w.candidates[w.next++];
    if (target == id_) {  // itself: available by definition
      w.answered.push_back(target);
      return;
    }
    w.waiting.insert(target);
    Message ping;
    ping.kind = MessageKind::kPing;
    ping.round = walk_id;
    ping.receiver = target;
    ctx.send(std::move(ping));
    after(ctx, s_.ping_timeout, [this, walk_id, target](Context& c) {
      auto it = walks_.find(walk_id);
      if (it == walks_.end() || !it->second.waiting.erase(target)) return;  // answered, or walk over
      view_[static_cast<std::size_t>(target)].present = 0;  // crash detected: skipped from now on
      ping_next(c, walk_id);
      maybe_finish(c, walk_id);
    });
  }

  void on_pong(Context& ctx, int walk_id, NodeId from) {
    auto it = walks_.find(walk_id);
    if (it == walks_.end() || !it->second.waiting.erase(from)) return;
    it->second.answered.push_back(from);
    maybe_finish(ctx, walk_id);
  }

  void maybe_finish(Context& ctx, int walk_id) {
    Walk& w = walks_.at(walk_id);
    const bool enough = static_cast<int>(w.answered.size()) >= w.want;
    if (!enough && !(w.waiting.empty() && w.next >= w.candidates.size())) return;
    std::vector<NodeId> result = w.answered;
    // The first available nodes in sample order, whatever order the answers came in.
    std::sort(result.begin(), result.end(), [&](NodeId a, NodeId b) {
      return std::find(w.candidates.begin(), w.candidates.end(), a) < std::find(w.candidates.begin(), w.candidates.end(), b);
    });
    auto done = std::move(w.done);
    walks_.erase(walk_id);
    done(ctx, std::move(result));
  }

  void after(Context& ctx, SimTime delay, std::function<void(Context&)> action) {
    const int tag = next_timer_++;
    timers_.emplace(tag, std::move(action));
    ctx.set_timer(delay, tag);
  }

  // ------------------------------------------------------------- trainer
  void train(Context& ctx, int round) {
    r_hat_ = round;
    job_x_ = x_;
    const auto& indices = world_->task->partition[static_cast<std::size_t>(id_)];
    const auto n = static_cast<std::int64_t>(indices.size());
    ctx.compute(samples_in_batches(n, world_->task->batch_size, s_.local_steps),
                [this, &indices, &shuffle = ctx.rng(Purpose::kDataShuffle)] {
                  auto optimizer = world_->task->optimizer->clone();
                  job_loss_ = train_local(*world_->task->model, *optimizer, *world_->task->train, indices, 1 << 30,
                                          world_->task->batch_size, shuffle, job_x_, s_.local_steps)
                                  .mean_loss;
                },
                round);
  }

  // Send this round's trained model to the first `a` available aggregators not yet tried.
  void contribute(Context& ctx, int round, std::shared_ptr<const Payload> bytes, std::set<NodeId> tried) {
    walk(ctx, round, s_.aggregators, tried, [this, round, bytes, tried](Context& c, std::vector<NodeId> aggregators) mutable {
      if (aggregators.empty()) return;  // nobody left to aggregate: this contribution is lost
      for (NodeId agg : aggregators) {
        tried.insert(agg);
        Message m;
        m.kind = MessageKind::kTrained;
        m.round = round;
        m.receiver = agg;
        m.num_samples = static_cast<std::int64_t>(world_->task->partition[static_cast<std::size_t>(id_)].size());
        m.loss = static_cast<float>(job_loss_);
        m.payload = bytes;
        if (agg == id_) {
          m.sender = id_;
          on_trained(c, std::move(m));
        } else {
          c.send(std::move(m));
        }
      }
      after(c, s_.ack_timeout, [this, round, bytes, aggregators, tried](Context& c2) {
        for (NodeId agg : aggregators)
          if (agg != id_ && !acked_.count({round, agg})) {
            view_[static_cast<std::size_t>(agg)].present = 0;  // gone: leave it out of every order
            if (round == r_hat_) contribute(c2, round, bytes, tried);
            return;
          }
      });
    });
  }

  // Liveness: an aggregator may crash after acknowledging and before sending the next round. A
  // trainer whose contribution to `round` was acknowledged and that hears of no later round within
  // stall_timeout starts round + 1 itself from its own model.
  void watch_for_stall(Context& ctx, int round) {
    after(ctx, s_.stall_timeout, [this, round](Context& c) {
      if (r_hat_ == round && newest_round() <= round) send_sample(c, round + 1);
    });
  }

  // ------------------------------------------------------------- aggregator
  static constexpr int kMaxRestarts = 10;
  struct Aggregation {
    std::map<NodeId, Vector> models;
    double loss_sum = 0.0;  // of the honest trainers
    int honest = 0;
    bool done = false;
    int restarts = 0;
  };

  void on_trained(Context& ctx, Message&& m) {
    if (m.sender != id_) {
      merge_view(m);
      Message ack;
      ack.kind = MessageKind::kAck;
      ack.round = m.round;
      ack.receiver = m.sender;
      ctx.send(std::move(ack));
    } else {
      acked_.insert({m.round, id_});
    }
    Aggregation& a = aggregations_[m.round];
    if (a.done || a.models.count(m.sender)) return;  // late or duplicate
    a.models.emplace(m.sender, codec_->decode(model_bytes(m), x_.size()));
    if (!world_->attack || !world_->attack->is_attacker(m.sender)) {  // a Byzantine loss is not the model's
      a.loss_sum += m.loss;
      ++a.honest;
    }
    const int round = m.round;
    if (a.models.size() == 1) arm_timeout(ctx, round);
    if (static_cast<double>(a.models.size()) >= std::floor(s_.success_fraction * s_.sample)) aggregate(ctx, round);
  }

  // At aggregation_timeout: aggregate what arrived if it reaches liveness_min; otherwise restart
  // the round with a fresh sample of available nodes (fed this node's model), keeping what came.
  void arm_timeout(Context& ctx, int round) {
    after(ctx, s_.aggregation_timeout, [this, round](Context& c) {
      Aggregation& late = aggregations_[round];
      if (late.done) return;
      if (static_cast<int>(late.models.size()) >= s_.liveness_min) {
        aggregate(c, round);
        return;
      }
      // Superseded (some node is known active in a later round) or hopeless: drop the round.
      if (newest_round() > round || ++late.restarts > kMaxRestarts) {
        late.done = true;
        return;
      }
      send_sample(c, round);
      arm_timeout(c, round);
    });
  }

  // Walks order(round) for `sample` available nodes and sends them this node's model as the
  // model to train in `round`.
  void send_sample(Context& ctx, int round) {
    walk(ctx, round, s_.sample, {}, [this, round](Context& c, std::vector<NodeId> sample) {
      auto bytes = std::make_shared<const Payload>(payload(c));
      for (NodeId t : sample) {
        if (t == id_) {
          if (round > r_hat_) train(c, round);
          continue;
        }
        Message m;
        m.kind = MessageKind::kAggregated;
        m.round = round;
        m.receiver = t;
        m.payload = bytes;
        c.send(std::move(m));
      }
    });
  }

  void aggregate(Context& ctx, int round) {
    Aggregation& a = aggregations_[round];
    a.done = true;
    if (world_->attack) {
      Attack::Updates updates;
      for (auto& [sender, model] : a.models) updates.emplace_back(sender, &model);
      world_->attack->corrupt(static_cast<std::uint64_t>(round), updates);
    }
    Vector sum = Vector::Zero(x_.size());
    for (const auto& [sender, model] : a.models) sum += model;  // ascending sender
    const Vector average = sum / static_cast<float>(a.models.size());
    world_->recorder->observe(ctx, Observation{round, id_, average,
                                               {static_cast<double>(a.models.size()), a.honest > 0 ? a.loss_sum / a.honest : 0.0}});
    while (!aggregations_.empty() && aggregations_.begin()->first < round - 2) aggregations_.erase(aggregations_.begin());
    if (round >= s_.rounds) return;
    x_ = average;
    send_sample(ctx, round + 1);
  }

  std::shared_ptr<ModestWorld> world_;
  const ModestSettings& s_;
  NodeId id_;
  Vector x_, job_x_;
  std::unique_ptr<Compressor> codec_;
  std::vector<ModestViewEntry> view_;
  std::vector<std::pair<NodeId, ModestViewEntry>> pending_joins_;
  int r_hat_ = 0;
  double job_loss_ = 0.0;
  int next_walk_ = 0, next_timer_ = 1;
  std::map<int, Walk> walks_;
  std::map<int, std::function<void(Context&)>> timers_;
  std::set<std::pair<int, NodeId>> acked_;
  std::map<int, Aggregation> aggregations_;
};

}  // namespace

NodeSet make_modest(Section& protocol, ProtocolParts& parts) {
  auto world = std::make_shared<ModestWorld>();
  const int n = static_cast<int>(parts.task->partition.size());
  ModestSettings& s = world->settings;
  s.rounds = parts.rounds;
  const auto at_most_nodes = [&](const char* key) {
    const int v = protocol.integer<int>(key);
    if (v > n) protocol.fail(key, std::to_string(v) + " is out of range; must be <= " + std::to_string(n) + " (the nodes)");
    return v;
  };
  s.sample = at_most_nodes("sample");
  s.aggregators = at_most_nodes("aggregators");
  s.success_fraction = protocol.number("success_fraction");
  s.liveness_min = protocol.integer<int>("liveness_min");
  s.ping_timeout = from_seconds(protocol.number("ping_timeout"));
  s.aggregation_timeout = from_seconds(protocol.number("aggregation_timeout"));
  s.ack_timeout = from_seconds(protocol.number("ack_timeout"));
  s.stall_timeout = from_seconds(protocol.number("stall_timeout", 2.0 * to_seconds(s.aggregation_timeout)));
  s.inactivity_threshold = protocol.integer<int>("inactivity_threshold");
  s.local_steps = protocol.integer("local_steps");
  Section crash = protocol.child("crash");
  s.crash_fraction = crash.number("fraction");
  s.crash_at = from_seconds(crash.number("at_seconds"));
  Section join = protocol.child("join");
  s.join_fraction = join.number("fraction");
  s.join_at = from_seconds(join.number("at_seconds"));
  Section leave = protocol.child("leave");
  s.leave_fraction = leave.number("fraction");
  s.leave_at = from_seconds(leave.number("at_seconds"));
  world->task = parts.task;
  world->attack = parts.attack;
  world->seed = parts.seed;
  world->nodes = n;
  world->recorder = std::make_shared<ModestRecorder>(*parts.task, parts.rounds);
  world->crashes.assign(static_cast<std::size_t>(n), false);
  world->joins = world->leaves = world->crashes;
  // One seeded permutation: its first nodes crash, the next join late, the next leave.
  const auto count = [n](double fraction) { return static_cast<std::int32_t>(std::lround(fraction * n)); };
  const std::int32_t crashing = count(s.crash_fraction), joining = count(s.join_fraction), leaving = count(s.leave_fraction);
  if (crashing + joining + leaving > n - 1)
    protocol.fail("crash", "crash, join and leave fractions together leave no node running the whole time");
  Rng churn(parts.seed, kNoNode, Purpose::kChurn);
  const auto order = churn.sample_without_replacement(n, crashing + joining + leaving);
  for (std::int32_t k = 0; k < static_cast<std::int32_t>(order.size()); ++k) {
    auto& set = k < crashing ? world->crashes : k < crashing + joining ? world->joins : world->leaves;
    set[static_cast<std::size_t>(order[static_cast<std::size_t>(k)])] = true;
  }
  NodeSet set;
  set.probe = world->recorder;
  for (NodeId i = 0; i < n; ++i)
    set.nodes.push_back(std::make_unique<ModestNode>(world, i, parts.initial_model, parts.uplink->clone()));
  return set;
}

void register_modest(ProtocolRegistry& r) {
  const auto churn = [](std::string key, std::string description, std::string what) {
    return PluginSpec(std::move(key), std::move(description))
        .number("fraction", 0.0, Range::between(0, 1), "fraction of the nodes that " + what)
        .number("at_seconds", 0.0, Range::at_least(0), "when they do, in virtual seconds", "s");
  };
  r.add(PluginSpec("modest", "MoDeST: each round a hash-ordered sample of available nodes trains and aggregates")
            .integer("sample", 10, Range::at_least(1), "trainers per round (<= nodes)")
            .integer("aggregators", 1, Range::at_least(1), "aggregators per round (<= nodes)")
            .number("success_fraction", 1.0, Range::above_until(0, 1), "fraction of the trainers' models an aggregator waits for")
            .integer("liveness_min", 3, Range::at_least(1), "pings a node answers before it counts as alive")
            .number("ping_timeout", 5.0, Range::above_until(0, 1e9), "a ping unanswered this long fails", "s")
            .number("aggregation_timeout", 300.0, Range::above_until(0, 1e9), "an aggregator gives up waiting after", "s")
            .number("ack_timeout", 60.0, Range::above_until(0, 1e9), "an unacknowledged model is resent after", "s")
            .number("stall_timeout", 600.0, Range::above_until(0, 1e9), "a round without progress restarts after", "s")
            .computed_default("2 x aggregation_timeout")
            .integer("inactivity_threshold", 50, Range::at_least(1), "rounds without a sign of life before a node is dropped from views", "rounds")
            .integer("local_steps", 5, Range::at_least(1), "minibatches a trainer takes")
            .section(churn("crash", "nodes that crash for good", "crash"))
            .section(churn("join", "nodes that join late", "join late"))
            .section(churn("leave", "nodes that leave for good, announcing it", "leave"))
            .with_traits(ProtocolTraits{.sections = {"compressor"},
                                        .attacks = true,
                                        .uplink = {.kind = CodecNeed::Kind::kDense, .feedback = false, .why = "sends whole models (compressed gossip is supported for dpsgd)"}}),
        [](Section& s, ProtocolParts& parts) { return std::make_unique<NodeSet>(make_modest(s, parts)); });
}

}  // namespace starling
