// The asynchronous servers as message handlers. They share one node: it keeps `concurrency`
// clients busy (each trip: pull the model, train, send the update) and differs only in when and
// how it folds arrivals into the model.
//
// Attacks (`attack:`): the attacking clients train honestly and their updates are replaced at the
// server just before they are folded in, as FedAvg's server does. What an omniscient attack (ALIE,
// IPM) sees: fedbuff, fedfix and afa-cd the honest updates of the buffer being applied; afa-cs the
// latest update of every honest client heard from (the vectors it sums); fedasync, which applies
// each arrival alone, the last `concurrency` honest arrivals.
#include "nodes/async_server.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <map>
#include <optional>

#include "learning/training.h"
#include "nodes/server_client.h"

namespace starling {

double Staleness::weight(int tau) const {
  switch (kind) {
    case Kind::kNone: return 1.0;
    case Kind::kSqrt: return 1.0 / std::sqrt(1.0 + tau);
    case Kind::kPoly: return std::pow(1.0 + tau, -exponent);
  }
  return 1.0;
}

namespace {

enum class Mode { kFedBuff, kFedAsync, kFedFix, kAfaCd, kAfaCs };

struct AsyncSettings {
  Mode mode = Mode::kFedBuff;
  int concurrency = 10;
  int buffer = 10;          // fedbuff: K; afa: M
  Staleness staleness;      // fedbuff, fedasync
  double alpha = 0.6;       // fedasync
  SimTime period = 0;       // fedfix
  double server_lr = 1.0;   // afa: eta
  SimTime timeout = 0;      // > 0: a trip unanswered this long is given up (the client is free again)
  SimTime poll = 0;         // with availability: retry filling idle slots this often
};

class AsyncServer final : public Node {
 public:
  AsyncServer(ProtocolParts& parts, const AsyncSettings& settings)
      : task_(*parts.task), settings_(settings), rounds_(parts.rounds), eval_every_(parts.eval_every),
        model_(parts.initial_model), aggregator_(std::move(parts.aggregator)),
        optimizer_(std::move(parts.server_optimizer)), downlink_(parts.downlink->clone()),
        uplink_decoder_(parts.uplink->clone()), attack_(parts.attack), noise_std_(parts.link_noise_std),
        busy_(parts.task->partition.size(), false), latest_(settings.mode == Mode::kAfaCs ? busy_.size() : 0),
        availability_(parts.availability), trip_round_(busy_.size(), 0), trip_id_(busy_.size(), 0) {
    for (const auto& p : task_.partition) total_samples_ += static_cast<double>(p.size());
  }

  void on_start(Context& ctx) override {
    if (attack_)  // who was Byzantine, for the results (committed with round 1)
      for (NodeId a : attack_->attackers()) ctx.metrics().metric(0, ctx.now(), a, "byzantine", 1.0);
    dispatch(ctx);
    if (settings_.mode == Mode::kFedFix) ctx.set_timer(settings_.period, kTick);
  }

  void on_message(Context& ctx, Message&& m) override {
    const auto client = static_cast<std::size_t>(m.sender - 1);
    const bool known = m.kind == MessageKind::kUpdate && m.sender >= 1 && client < busy_.size();
    if (known && settings_.timeout > 0 && (!busy_[client] || m.round != trip_round_[client])) {
      ++late_;  // the answer to a trip given up: ignored
      return;
    }
    if (!known || !busy_[client])
      throw Error("async server: unexpected " + std::string(to_string(m.kind)) + " message from node " +
                  std::to_string(m.sender));
    // An update computed on the same version as the current trip's answers it (the same model),
    // even if it comes from an earlier trip given up.
    busy_[client] = false;
    --busy_count_;
    open_trips_.erase(trip_id_[client]);
    Arrival a{m.sender, uplink_decoder_->receive(m.sender, m.payload_bytes(), model_.size()), version_ - (m.round - 1),
              m.num_samples, m.loss};
    add_link_noise(a.update, noise_std_, ctx.rng(Purpose::kLinkNoise));
    switch (settings_.mode) {
      case Mode::kFedAsync: {
        // x <- (1 - a) x + a x_client, as the step a (x_client - x) through the server optimizer.
        const double mix = settings_.alpha * settings_.staleness.weight(a.staleness);
        if (attack_) corrupt_alone(a);
        auto pulled = pulled_.find(m.round - 1);
        Vector step = pulled->second.model + a.update - model_;
        if (--pulled->second.holders == 0) pulled_.erase(pulled);
        step *= static_cast<float>(mix);
        optimizer_->apply(model_, step);
        arrivals_.push_back(std::move(a));
        if (!finish_update(ctx)) return;
        break;
      }
      case Mode::kFedFix:
        arrivals_.push_back(std::move(a));
        return;  // folded in and refilled at the next tick
      case Mode::kAfaCs:
        latest_[client] = a.update;
        [[fallthrough]];
      case Mode::kFedBuff:
      case Mode::kAfaCd:
        arrivals_.push_back(std::move(a));
        if (static_cast<int>(arrivals_.size()) == settings_.buffer && !apply_buffer(ctx)) return;
        break;
    }
    // Refill once every message of this instant is handled: simultaneous arrivals then all see
    // the model they produced (with K = C = all clients and equal speeds, FedBuff is FedAvg).
    if (!dispatch_pending_) {
      dispatch_pending_ = true;
      ctx.set_timer(0, kDispatch);
    }
  }

  void on_timer(Context& ctx, int tag) override {
    if (tag == kDispatch) {
      dispatch_pending_ = false;
      dispatch(ctx);
      return;
    }
    if (tag == kPoll) {
      poll_pending_ = false;
      dispatch(ctx);
      return;
    }
    if (tag >= kTripTimeout) {  // a trip's timeout: if still open, the client is lost for it
      const auto trip = open_trips_.find(tag - kTripTimeout);
      if (trip == open_trips_.end()) return;
      const auto c = static_cast<std::size_t>(trip->second);
      open_trips_.erase(trip);
      busy_[c] = false;
      --busy_count_;
      ++lost_;
      if (settings_.mode == Mode::kFedAsync) {
        auto pulled = pulled_.find(trip_round_[c] - 1);
        if (--pulled->second.holders == 0) pulled_.erase(pulled);
      }
      if (!dispatch_pending_) {
        dispatch_pending_ = true;
        ctx.set_timer(0, kDispatch);
      }
      return;
    }
    ctx.set_timer(settings_.period, kTick);
    if (!arrivals_.empty() && !apply_buffer(ctx)) return;
    dispatch(ctx);
  }

 private:
  enum Tag { kDispatch = 1, kTick = 2, kPoll = 3, kTripTimeout = 4 };  // kTripTimeout + trip id
  struct Arrival {
    NodeId sender;
    Vector update;
    int staleness;
    std::int64_t samples;
    float loss;
  };
  struct Pulled {  // fedasync: a model version some busy client trains on
    Vector model;  // as the clients decode it
    int holders = 0;
  };

  // Sends the current model to uniformly drawn idle clients until `concurrency` are busy.
  void dispatch(Context& ctx) {
    std::vector<int> idle;
    const SimTime now = ctx.now();
    for (std::size_t c = 0; c < busy_.size(); ++c)  // offline clients are sent nothing
      if (!busy_[c] && (!availability_ || availability_->online(static_cast<NodeId>(c + 1), now)))
        idle.push_back(static_cast<int>(c));
    const int k = std::min(settings_.concurrency - busy_count_, static_cast<int>(idle.size()));
    if (availability_ && busy_count_ + std::max(k, 0) < settings_.concurrency && !poll_pending_) {
      poll_pending_ = true;  // too few clients online: look again later
      ctx.set_timer(settings_.poll, kPoll);
    }
    if (k <= 0) return;
    auto picks = ctx.rng(Purpose::kSampling).sample_without_replacement(static_cast<std::int32_t>(idle.size()), k);
    std::sort(picks.begin(), picks.end());
    Message m;
    m.kind = MessageKind::kModel;
    m.round = version_ + 1;  // the round in progress; the reply echoes it, giving the staleness
    m.set_payload(downlink_->encode(model_, ctx.rng(Purpose::kCompression)));
    if (settings_.mode == Mode::kFedAsync) {
      auto& p = pulled_[version_];
      if (p.holders == 0) p.model = downlink_->decode(*m.payload, model_.size());
      p.holders += k;
    }
    for (auto i : picks) {
      const int c = idle[static_cast<std::size_t>(i)];
      busy_[static_cast<std::size_t>(c)] = true;
      ++busy_count_;
      m.receiver = c + 1;
      ctx.send(m);
      trip_round_[static_cast<std::size_t>(c)] = m.round;
      trip_id_[static_cast<std::size_t>(c)] = ++trips_;
      if (settings_.timeout > 0) {
        open_trips_[trips_] = c;
        ctx.set_timer(settings_.timeout, static_cast<int>(kTripTimeout + trips_));
      }
    }
  }

  // Folds the buffered arrivals into the model: x <- x + opt(sum_i w_i u_i / normaliser), through
  // the aggregator (its weighted combination, rescaled by sum w_i / normaliser). False once the
  // run is over.
  bool apply_buffer(Context& ctx) {
    std::vector<Contribution> contributions;
    double normaliser = 1.0;
    switch (settings_.mode) {
      case Mode::kFedBuff:  // buffer / K, each update weighted by its staleness
        for (const auto& a : arrivals_) contributions.push_back({a.sender, settings_.staleness.weight(a.staleness), &a.update});
        normaliser = settings_.buffer;
        break;
      case Mode::kFedFix:  // sum p_i u_i with p_i = n_i / N over all clients: E[w_i] stays proportional to p_i
        for (const auto& a : arrivals_) contributions.push_back({a.sender, static_cast<double>(a.samples), &a.update});
        normaliser = total_samples_;
        break;
      case Mode::kAfaCd:  // eta * mean of the first M arrivals (updates are -eta_L G_i)
        for (const auto& a : arrivals_) contributions.push_back({a.sender, 1.0, &a.update});
        normaliser = settings_.buffer / settings_.server_lr;
        break;
      case Mode::kAfaCs:  // eta * (1/n) sum of every client's latest (a client not heard from yet counts 0)
        for (std::size_t c = 0; c < latest_.size(); ++c)
          if (latest_[c]) contributions.push_back({static_cast<NodeId>(c + 1), 1.0, &*latest_[c]});
        normaliser = static_cast<double>(latest_.size()) / settings_.server_lr;
        break;
      case Mode::kFedAsync:
        throw Error("fedasync applies each arrival on its own");
    }
    std::vector<Vector> forged;  // afa-cs: what the attackers send in place of their latest
    if (attack_) {
      forged.reserve(contributions.size());  // `contributions` points into it
      Attack::Updates updates;
      for (auto& c : contributions) {
        if (settings_.mode == Mode::kAfaCs && attack_->is_attacker(c.sender))
          c.vector = &forged.emplace_back(*c.vector);  // latest_ keeps the honest update
        updates.emplace_back(c.sender, const_cast<Vector*>(c.vector));  // arrivals_ or forged: the server's own
      }
      attack_->corrupt(static_cast<std::uint64_t>(version_ + 1), updates);
    }
    double total = 0.0;
    for (const auto& c : contributions) total += c.weight;
    Vector step = aggregator_->combine(contributions);
    if (const double scale = total / normaliser; scale != 1.0) step *= static_cast<float>(scale);
    optimizer_->apply(model_, step);
    contributions_ = static_cast<int>(contributions.size());
    return finish_update(ctx);
  }

  // fedasync: an attacker's update becomes what it sends; an honest one joins the last
  // `concurrency` honest arrivals, which are what ALIE and IPM see.
  void corrupt_alone(Arrival& a) {
    if (!attack_->is_attacker(a.sender)) {
      if (!attack_->omniscient()) return;
      recent_honest_.emplace_back(a.sender, a.update);
      if (static_cast<int>(recent_honest_.size()) > settings_.concurrency) recent_honest_.pop_front();
      return;
    }
    Attack::Updates updates;
    for (auto& [sender, u] : recent_honest_) updates.emplace_back(sender, &u);  // read only
    updates.emplace_back(a.sender, &a.update);
    attack_->corrupt(static_cast<std::uint64_t>(version_ + 1), updates);
  }

  // Records the new version's metrics; false once `rounds` versions are done.
  bool finish_update(Context& ctx) {
    ++version_;
    double loss = 0.0, samples = 0.0, staleness = 0.0;
    for (const auto& a : arrivals_) {
      staleness += a.staleness;
      if (attack_ && attack_->is_attacker(a.sender)) continue;  // a Byzantine loss is not the model's
      loss += static_cast<double>(a.loss) * static_cast<double>(a.samples);
      samples += static_cast<double>(a.samples);
    }
    auto& sink = ctx.metrics();
    const SimTime t = ctx.now();
    const auto count = static_cast<double>(arrivals_.size());
    sink.metric(version_, t, kNoNode, "participants", count);
    sink.metric(version_, t, kNoNode, "train_loss", samples > 0 ? loss / samples : 0.0);
    sink.metric(version_, t, kNoNode, "staleness_mean", staleness / count);
    if (settings_.mode == Mode::kAfaCs) sink.metric(version_, t, kNoNode, "contributions", contributions_);
    if (settings_.timeout > 0) {  // trips given up, and their answers that came anyway
      sink.metric(version_, t, kNoNode, "lost_trips", lost_);
      sink.metric(version_, t, kNoNode, "late_updates", late_);
      lost_ = late_ = 0;
    }
    if (version_ % eval_every_ == 0 || version_ == rounds_) {
      const auto eval = evaluate(*task_.model, model_, *task_.test);
      sink.metric(version_, t, kNoNode, "test_accuracy", eval.accuracy);
      sink.metric(version_, t, kNoNode, "test_loss", eval.loss);
    }
    arrivals_.clear();
    ctx.finish_round(version_);
    if (version_ < rounds_) return true;
    ctx.stop();
    return false;
  }

  const LearningTask& task_;
  AsyncSettings settings_;
  int rounds_, eval_every_;
  Vector model_;
  std::unique_ptr<Aggregator> aggregator_;
  std::unique_ptr<ServerOptimizer> optimizer_;
  std::unique_ptr<Compressor> downlink_, uplink_decoder_;
  std::shared_ptr<const Attack> attack_;
  std::deque<std::pair<NodeId, Vector>> recent_honest_;  // fedasync under alie/ipm
  double noise_std_;
  std::vector<bool> busy_;  // per client: training on a model we sent
  int busy_count_ = 0;
  int version_ = 0;         // model updates applied so far
  bool dispatch_pending_ = false;
  double total_samples_ = 0.0;
  std::vector<Arrival> arrivals_;               // since the last update, in arrival order
  std::vector<std::optional<Vector>> latest_;   // afa-cs: each client's latest update
  int contributions_ = 0;
  std::map<int, Pulled> pulled_;                // fedasync: version -> model
  std::shared_ptr<const Availability> availability_;
  std::vector<int> trip_round_;                 // per client: the round its current trip was sent with
  std::vector<int> trip_id_;                    // per client: its current trip
  int trips_ = 0;                               // trips so far
  std::map<int, int> open_trips_;               // with a timeout: trip -> client, until answered or given up
  bool poll_pending_ = false;
  int lost_ = 0, late_ = 0;
};

AsyncSettings read_common(Section& protocol, ProtocolParts& parts, Mode mode) {
  const int clients = static_cast<int>(parts.task->partition.size());
  AsyncSettings s;
  s.mode = mode;
  s.concurrency = protocol.integer<int>("concurrency", std::min(10, clients));
  if (s.concurrency > clients)
    protocol.fail("concurrency", std::to_string(s.concurrency) + " is out of range; must be <= " + std::to_string(clients) +
                                     " (the clients)");
  s.timeout = from_seconds(protocol.number("deadline"));
  if (parts.lossy && s.timeout == 0)
    protocol.fail("deadline", "clients that go offline or drop out never answer; give each trip a deadline in virtual "
                              "seconds after which the client is given up (e.g. protocol.deadline: 60)");
  if (parts.availability) s.poll = from_seconds(protocol.number("poll_s"));
  return s;
}

void read_staleness(Section& protocol, AsyncSettings& s) {
  const auto kind = protocol.text("staleness");
  s.staleness.kind = kind == "none" ? Staleness::Kind::kNone : kind == "sqrt" ? Staleness::Kind::kSqrt : Staleness::Kind::kPoly;
  if (s.staleness.kind == Staleness::Kind::kPoly) s.staleness.exponent = protocol.number("staleness_exponent");
}

NodeSet assemble(const std::string& name, ProtocolParts& parts, const LocalWork& work, const AsyncSettings& s) {
  NodeSet set = make_star_clients(name, parts, work);
  set.nodes[0] = std::make_unique<AsyncServer>(parts, s);
  return set;
}

LocalWork fixed_work(Section& protocol) { return LocalWork{.steps = protocol.integer("local_steps")}; }

}  // namespace

NodeSet make_fedbuff(Section& protocol, ProtocolParts& parts) {
  AsyncSettings s = read_common(protocol, parts, Mode::kFedBuff);
  s.buffer = protocol.integer<int>("buffer");
  read_staleness(protocol, s);
  return assemble("fedbuff", parts, fixed_work(protocol), s);
}

NodeSet make_fedasync(Section& protocol, ProtocolParts& parts) {
  AsyncSettings s = read_common(protocol, parts, Mode::kFedAsync);
  s.alpha = protocol.number("alpha");
  read_staleness(protocol, s);
  return assemble("fedasync", parts, fixed_work(protocol), s);
}

NodeSet make_fedfix(Section& protocol, ProtocolParts& parts) {
  AsyncSettings s = read_common(protocol, parts, Mode::kFedFix);
  s.period = from_seconds(protocol.number("period_s"));
  if (s.period <= 0) protocol.fail("period_s", "must be at least one nanosecond");
  return assemble("fedfix", parts, fixed_work(protocol), s);
}

NodeSet make_afa(Section& protocol, ProtocolParts& parts) {
  const bool cs = protocol.text("variant") == "cs";
  AsyncSettings s = read_common(protocol, parts, cs ? Mode::kAfaCs : Mode::kAfaCd);
  s.buffer = protocol.integer<int>("buffer");
  s.server_lr = protocol.number("server_lr");
  LocalWork work{.steps = protocol.integer("min_steps"), .per_step = true};
  work.max_steps = protocol.integer("max_steps", std::max<std::int64_t>(10, work.steps));
  if (work.max_steps < work.steps) protocol.fail("max_steps", "must be at least protocol.min_steps");
  return assemble("afa", parts, work, s);
}

namespace {

PluginSpec async_spec(std::string name, std::string description) {
  return PluginSpec(std::move(name), std::move(description))
      .integer("concurrency", 10, Range::at_least(1), "clients training at any time")
      .computed_default("min(10, clients)")
      .number("deadline", 0.0, Range::at_least(0), "a trip unanswered this long is given up (0: never; needed with "
                                                   "availability or dropout)", "s")
      .number("poll_s", 1.0, Range::above_until(0, 1e9), "with availability: how often idle slots look for online clients", "s");
}
PluginSpec& with_staleness(PluginSpec& spec) {
  return spec.choice("staleness", "sqrt", {"none", "sqrt", "poly"}, "weight of an update s versions old: 1, 1/sqrt(1+s), (1+s)^-a")
      .number("staleness_exponent", 0.5, Range::at_least(0), "a of staleness: poly");
}
PluginSpec& with_local_steps(PluginSpec& spec) {
  return spec.integer("local_steps", 0, Range::at_least(0), "minibatches per trip; 0: train.local_epochs epochs");
}

}  // namespace

void register_async_protocols(ProtocolRegistry& r) {
  const ProtocolTraits traits{.server_based = true,
                              .default_topology = "star",
                              .sections = {"aggregator", "server_optimizer", "topology", "compressor", "downlink_compressor"},
                              .attacks = true,
                              .participation = true,
                              .prox = true};
  PluginSpec fedbuff = async_spec("fedbuff", "asynchronous FedBuff: C clients busy, apply the staleness-weighted buffer of every K updates");
  fedbuff.integer("buffer", 10, Range::between(1, 1 << 30), "updates K per server step");
  r.add(with_local_steps(with_staleness(fedbuff)).with_traits(traits),
        [](Section& s, ProtocolParts& parts) { return std::make_unique<NodeSet>(make_fedbuff(s, parts)); });
  PluginSpec fedasync = async_spec("fedasync", "asynchronous FedAsync: mix each arriving client model in at once, x <- (1-a)x + a x_i");
  fedasync.number("alpha", 0.6, Range::above_until(0, 1), "mixing weight a of an arriving model (times its staleness weight)");
  r.add(with_local_steps(with_staleness(fedasync)).with_traits(traits),
        [](Section& s, ProtocolParts& parts) { return std::make_unique<NodeSet>(make_fedasync(s, parts)); });
  PluginSpec fedfix = async_spec("fedfix", "asynchronous FedFix: every period_s, apply the updates finished since the last tick");
  fedfix.number("period_s", 5.0, Range::above_until(0, 1e9), "server tick", "s");
  r.add(with_local_steps(fedfix).with_traits(traits),
        [](Section& s, ProtocolParts& parts) { return std::make_unique<NodeSet>(make_fedfix(s, parts)); });
  r.add(async_spec("afa", "anarchic FL (AFA-CD/CS): clients pick their local steps, the server steps with mean gradients")
            .choice("variant", "cd", {"cd", "cs"}, "cd: a server step every buffer updates; cs: each update at once")
            .integer("buffer", 10, Range::between(1, 1 << 30), "updates per server step (variant cd)")
            .number("server_lr", 1.0, Range::above_until(0, 1e9), "server step size on the mean gradient")
            .integer("min_steps", 1, Range::at_least(1), "fewest local steps a client picks")
            .integer("max_steps", 10, Range::at_least(1), "most local steps a client picks")
            .computed_default("max(10, min_steps)")
            .with_traits(traits),
        [](Section& s, ProtocolParts& parts) { return std::make_unique<NodeSet>(make_afa(s, parts)); });
}

}  // namespace starling
