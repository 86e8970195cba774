// FedAvg (McMahan et al., 2017) as message handlers, and SCAFFOLD (Karimireddy et al., 2020) as
// the same rounds with a global control variate c sent along with the model; SCALLION and SCAFCOM
// (Huang, Li, Li, ICLR 2024) as SCAFFOLD whose clients send one compressed vector.
#include <cmath>
#include <map>
#include <set>

#include "learning/training.h"
#include "nodes/server_client.h"

namespace starling {

namespace {

class FedAvgServer final : public Node, public HoldsControl {
 public:
  FedAvgServer(ProtocolParts& parts, const LocalWork& work, RoundServerOptions options)
      : task_(*parts.task), work_(work), options_(std::move(options)), controls_(work.controls != Controls::kNone),
        rounds_(parts.rounds),
        eval_every_(parts.eval_every), model_(parts.initial_model),
        sampler_(std::move(parts.sampler)), aggregator_(std::move(parts.aggregator)),
        optimizer_(std::move(parts.server_optimizer)), downlink_(parts.downlink->clone()),
        uplink_decoder_(parts.uplink->clone()),
        control_decoder_(work.controls == Controls::kScaffold ? parts.uplink_operator->clone() : nullptr),
        attack_(parts.attack),
        // An attack replaces decoded updates, so each one is decoded.
        // Link noise is added to each decoded update, so each one is decoded too.
        sum_encodings_(uplink_decoder_->linear() && aggregator_->is_weighted_mean() && !attack_ && !controls_ &&
                       parts.link_noise_std == 0.0),
        clients_(static_cast<int>(parts.task->partition.size())), availability_(parts.availability),
        noise_std_(parts.link_noise_std),
        // Which updates made a round is worth recording once rounds can leave clients out.
        partial_(options_.deadline > 0 || options_.overselect > 1.0 || parts.availability),
        sizes_(client_sizes(*parts.task)), losses_(static_cast<std::size_t>(clients_), std::nan("")) {
    if (controls_) control_ = Vector::Zero(model_.size());
    for (const auto& p : task_.partition) all_samples_ += static_cast<double>(p.size());
  }

  const Vector& control() const override { return control_; }

  void on_start(Context& ctx) override {
    if (attack_)  // who was Byzantine, for the results (committed with round 1)
      for (NodeId a : attack_->attackers()) ctx.metrics().metric(0, ctx.now(), a, "byzantine", 1.0);
    start_round(ctx, 1);
  }

  void on_message(Context& ctx, Message&& m) override {
    if (m.kind == MessageKind::kUpdate && m.round < round_ && m.sender >= 1 && m.sender <= clients_) {
      // Too late: the round closed without it (deadline, or K faster updates). Ignored, but the
      // server has heard the client's loss.
      losses_[static_cast<std::size_t>(m.sender - 1)] = static_cast<double>(m.loss);
      ++late_;
      return;
    }
    if (m.kind != MessageKind::kUpdate || m.round != round_ || !expected_.count(m.sender) || updates_.count(m.sender))
      throw Error("fedavg server: unexpected " + std::string(to_string(m.kind)) + " message from node " +
                  std::to_string(m.sender) + " in round " + std::to_string(m.round));
    // Decoded before it is stored: a malformed payload throws and leaves the round as it was.
    Received u;
    const std::int64_t d = model_.size();
    Rng& noise = ctx.rng(Purpose::kLinkNoise);
    switch (work_.controls) {
      case Controls::kNone:
        if (sum_encodings_) u.encoded = m.payload;
        else u.update = uplink_decoder_->receive(m.sender, m.payload_bytes(), d);
        add_link_noise(u.update, noise_std_, noise);
        break;
      case Controls::kScaffold: {  // C(dy) goes through the aggregator as FedAvg's update, C(dc) is summed
        const auto [dy, dc] = unpack_pair(m.payload_bytes(), "scaffold update");
        u.update = uplink_decoder_->receive(m.sender, dy, d);
        u.control = control_decoder_->receive(m.sender, dc, d);
        add_link_noise(u.update, noise_std_, noise);
        add_link_noise(u.control, noise_std_, noise);
        break;
      }
      case Controls::kScallion:
      case Controls::kScafcom: {  // delta is summed for c and stands for the displacement -K lr (c + delta)
        u.control = uplink_decoder_->receive(m.sender, m.payload_bytes(), d);
        add_link_noise(u.control, noise_std_, noise);
        u.update = control_displacement(
            control_, u.control, local_batches(m.num_samples, task_.batch_size, task_.local_epochs, work_.steps),
            task_.optimizer->lr());
        break;
      }
    }
    u.samples = m.num_samples;
    u.loss = m.loss;
    updates_.emplace(m.sender, std::move(u));
    losses_[static_cast<std::size_t>(m.sender - 1)] = static_cast<double>(m.loss);
    if (static_cast<int>(updates_.size()) == target_) finish_round(ctx);
  }

  void on_timer(Context& ctx, int round) override {
    if (round == round_ && !done_) finish_round(ctx);  // the deadline of a round still open
  }

 private:
  struct Received {
    Vector update;
    Vector control;  // control variates: the client's dc (scaffold) or delta (scallion, scafcom), decoded
    std::shared_ptr<const Payload> encoded;  // kept instead of `update` when encodings are summed
    std::int64_t samples = 0;
    float loss = 0.0f;
  };

  void start_round(Context& ctx, int round) {
    round_ = round;
    updates_.clear();
    expected_.clear();
    Message m;
    m.kind = MessageKind::kModel;
    m.round = round;
    m.set_payload(downlink_->encode(controls_ ? concat(model_, control_) : model_, ctx.rng(Purpose::kCompression)));
    const int k = sampler_->per_round(clients_);
    const int asked = std::min(clients_, static_cast<int>(std::ceil(options_.overselect * k - 1e-9)));
    ClientPool pool{round, clients_, &sizes_, &losses_, {}};
    const SimTime now = ctx.now();
    if (availability_) pool.online = [&](int c) { return availability_->online(c + 1, now); };
    selected_ = 0;
    for (int c : sampler_->sample(pool, asked, ctx.rng(Purpose::kSampling))) {
      ++selected_;
      if (!pool.reachable(c)) continue;  // an offline client is sent nothing
      m.receiver = c + 1;
      expected_.insert(m.receiver);
      ctx.send(m);
    }
    target_ = std::min(k, static_cast<int>(expected_.size()));
    if (options_.deadline > 0) ctx.set_timer(options_.deadline, round);
    else if (target_ == 0) finish_round(ctx);  // nobody to wait for (cannot happen without a deadline)
  }

  void finish_round(Context& ctx) {
    std::vector<Contribution> contributions;
    std::vector<const Payload*> encoded;
    std::vector<double> weights;
    double loss_sum = 0.0, samples = 0.0;
    std::map<NodeId, Vector*> decoded;
    for (auto& [sender, u] : updates_) {  // std::map: ascending sender
      contributions.push_back({sender, static_cast<double>(u.samples), &u.update});
      encoded.push_back(u.encoded.get());
      weights.push_back(static_cast<double>(u.samples));
      decoded[sender] = &u.update;
      if (attack_ && attack_->is_attacker(sender)) continue;  // a Byzantine loss is not the model's
      loss_sum += static_cast<double>(u.loss) * static_cast<double>(u.samples);
      samples += static_cast<double>(u.samples);
    }
    if (attack_) attack_->corrupt(round_, decoded);
    if (!contributions.empty()) {  // a round no update reached leaves the model as it was
      Vector combined = sum_encodings_ ? uplink_decoder_->decode_mean(encoded, weights, model_.size())
                                       : aggregator_->combine(contributions);
      if (options_.weights_over_all_clients) {
        double round_samples = 0.0;
        for (double w : weights) round_samples += w;
        combined *= static_cast<float>(round_samples / all_samples_);
      }
      optimizer_->apply(model_, combined);
    }
    if (controls_ && !updates_.empty()) {  // c += (alpha/N) sum_S dc, summed in sender order: what keeps c the mean of all N c_i
      Vector sum = Vector::Zero(model_.size());
      for (const auto& [sender, u] : updates_) sum += u.control;
      if (work_.alpha != 1.0) sum *= static_cast<float>(work_.alpha);
      control_ += sum / static_cast<float>(clients_);
    }
    updates_.clear();
    record_server_round(ctx, task_, model_, round_, rounds_, eval_every_, static_cast<double>(contributions.size()),
                        samples > 0 ? loss_sum / samples : 0.0);
    if (partial_) {
      auto& sink = ctx.metrics();
      const SimTime t = ctx.now();
      sink.metric(round_, t, kNoNode, "selected", selected_);
      sink.metric(round_, t, kNoNode, "contacted", static_cast<double>(expected_.size()));
      sink.metric(round_, t, kNoNode, "late_updates", late_);  // ignored since the previous round closed
      for (const auto& c : contributions) sink.metric(round_, t, c.sender, "aggregated", 1.0);
      late_ = 0;
    }
    if (options_.personal && (round_ % eval_every_ == 0 || round_ == rounds_))
      record_personalized(ctx, round_, task_, *options_.personal, model_);
    if (options_.round_metrics) {
      std::vector<NodeId> senders;
      for (const auto& c : contributions) senders.push_back(c.sender);
      options_.round_metrics(ctx, round_, senders);
    }
    ctx.finish_round(round_);
    if (round_ == rounds_) {
      done_ = true;  // the last round's deadline timer may still fire
      ctx.stop();
    } else {
      start_round(ctx, round_ + 1);
    }
  }

  const LearningTask& task_;
  LocalWork work_;  // what the clients do (their K, alpha) and which control variates they keep
  RoundServerOptions options_;
  bool controls_;
  int rounds_, eval_every_;
  Vector model_;
  Vector control_;  // control variates: the global c
  std::unique_ptr<ClientSampler> sampler_;
  std::unique_ptr<Aggregator> aggregator_;
  std::unique_ptr<ServerOptimizer> optimizer_;
  std::unique_ptr<Compressor> downlink_, uplink_decoder_;
  std::unique_ptr<Compressor> control_decoder_;  // SCAFFOLD: the receiver of the dc stream (bare operator)
  std::shared_ptr<const Attack> attack_;
  bool sum_encodings_;  // linear uplink (sketches) + mean: average the encodings, decode once (FetchSGD)
  int clients_;
  double all_samples_ = 0.0;  // training samples of all clients
  int round_ = 0;
  bool done_ = false;
  std::shared_ptr<const Availability> availability_;
  double noise_std_;
  bool partial_;
  std::vector<std::int64_t> sizes_;  // training samples per client
  std::vector<double> losses_;       // last loss each client reported (NaN: never)
  int target_ = 0;                   // updates that close the round: min(K, clients contacted)
  int selected_ = 0, late_ = 0;
  std::set<NodeId> expected_;
  std::map<NodeId, Received> updates_;
};

}  // namespace

std::unique_ptr<Node> make_round_server(ProtocolParts& parts, const LocalWork& work, RoundServerOptions options) {
  if (options.weights_over_all_clients && !parts.aggregator->is_weighted_mean())
    throw ConfigError("aggregator.kind", "this protocol weights updates by n_i / (samples of all clients) and needs mean");
  return std::make_unique<FedAvgServer>(parts, work, std::move(options));
}

NodeSet make_round_protocol(const std::string& name, Section& protocol, ProtocolParts& parts, LocalWork work) {
  work.steps = protocol.integer("local_steps");
  NodeSet set = make_star_clients(name, parts, work);
  RoundServerOptions options;
  options.deadline = from_seconds(protocol.number("deadline"));
  options.overselect = protocol.number("overselect");
  if (parts.lossy && options.deadline == 0)
    protocol.fail("deadline", "clients that go offline or drop out never answer; give rounds a deadline in virtual "
                              "seconds (e.g. protocol.deadline: 60)");
  if (parts.task->personalized()) options.personal = make_finetuned_models(*parts.task, parts.seed);
  set.nodes[0] = make_round_server(parts, work, std::move(options));  // last: the server takes the parts it owns
  return set;
}

NodeSet make_fedavg(Section& protocol, ProtocolParts& parts) { return make_round_protocol("fedavg", protocol, parts, {}); }

NodeSet make_scaffold(Section& protocol, ProtocolParts& parts) {
  return make_round_protocol("scaffold", protocol, parts, {.controls = Controls::kScaffold});
}

NodeSet make_scallion(Section& protocol, ProtocolParts& parts) {
  // Unbiased compression only; alpha = 1 / (1 + omega) by default (card 7.8).
  Section& compressor = *parts.compressor_section;
  const std::int64_t d = parts.initial_model.size();
  const auto omega = parts.uplink->unbiased_variance(d);
  if (!omega)
    compressor.fail("kind", "scallion needs an unbiased compressor (none, fp16, bf16, randk with unbiased: true, qsgd, "
                            "random_projection), not \"" + compressor.get<std::string>("kind", "none") +
                                "\"; scafcom takes biased ones such as topk");
  const double alpha = protocol.number("alpha", 1.0 / (1.0 + *omega));
  return make_round_protocol("scallion", protocol, parts, {.controls = Controls::kScallion, .alpha = alpha});
}

NodeSet make_scafcom(Section& protocol, ProtocolParts& parts) {
  // Biased (contractive) compression: an unbiased operator with variance is not contractive.
  Section& compressor = *parts.compressor_section;
  const auto omega = parts.uplink->unbiased_variance(parts.initial_model.size());
  if (omega && *omega > 0.0)
    compressor.fail("kind", "scafcom needs a contractive compressor (topk, sign, randk with unbiased: false, powersgd, "
                            "none, fp16, bf16); \"" + compressor.get<std::string>("kind", "none") +
                                "\" here is unbiased with variance omega = " + Section::shortest(*omega) +
                                ", which scallion takes");
  const double alpha = protocol.number("alpha");
  const double beta = protocol.number("beta");
  return make_round_protocol("scafcom", protocol, parts, {.controls = Controls::kScafcom, .alpha = alpha, .beta = beta});
}

PluginSpec round_protocol_spec(std::string name, std::string description) {
  return PluginSpec(std::move(name), std::move(description))
      .integer("local_steps", 0, Range::at_least(0), "minibatches per client per round; 0: train.local_epochs epochs")
      .number("deadline", 0.0, Range::at_least(0),
              "a round closes this long after it started, with the updates that arrived (0: wait for all)", "s")
      .number("overselect", 1.0, Range::between(1, 100),
              "contact this many times the sampled clients and close the round on the first updates (needs deadline)");
}

ProtocolTraits round_protocol_traits() {
  return {.server_based = true,
          .default_topology = "star",
          .sections = protocol_plugin_sections(),
          .participation = true,
          .prox = true};
}

void register_fedavg_family(ProtocolRegistry& r) {
  ProtocolTraits fedavg = round_protocol_traits();
  fedavg.attacks = fedavg.personalized = true;
  r.add(round_protocol_spec("fedavg", "synchronous FedAvg: sample clients, train locally, aggregate, apply on the server")
            .with_traits(fedavg),
        [](Section& s, ProtocolParts& parts) { return std::make_unique<NodeSet>(make_fedavg(s, parts)); });
  // The control-variate protocols send [x; c] down as one 2d vector: only dense encodings fit it.
  // Up, scaffold compresses y - x and c_i+ - c_i with any codec (feedback on y - x only,
  // nodes/server_client.cc); scallion and scafcom send one vector whose control variate already
  // does error feedback's work, and check the codec's bias when they are built.
  ProtocolTraits controls = round_protocol_traits();
  controls.downlink = {.kind = CodecNeed::Kind::kDense, .feedback = false, .why = "sends [model; control] down in one payload"};
  ProtocolTraits scaffold = controls;
  scaffold.personalized = true;
  r.add(round_protocol_spec("scaffold", "SCAFFOLD: FedAvg rounds whose local steps are corrected by control variates (option II)")
            .with_traits(scaffold),
        [](Section& s, ProtocolParts& parts) { return std::make_unique<NodeSet>(make_scaffold(s, parts)); });
  controls.uplink = {.feedback = false, .why = "'s control variates already feed back what compression leaves out"};
  r.add(round_protocol_spec("scallion", "SCALLION: SCAFFOLD with one unbiasedly compressed uplink vector per client, c_i += alpha delta")
            .number("alpha", 1.0, Range::above_until(0, 1), "control step c_i += alpha delta")
            .computed_default("1 / (1 + omega), omega the uplink compressor's variance bound")
            .with_traits(controls),
        [](Section& s, ProtocolParts& parts) { return std::make_unique<NodeSet>(make_scallion(s, parts)); });
  r.add(round_protocol_spec("scafcom", "SCAFCOM: SCAFFOLD with one contractively compressed uplink vector and local momentum beta")
            .number("alpha", 1.0, Range::above_until(0, 1), "control step c_i += alpha delta")
            .number("beta", 0.2, Range::above_until(0, 1), "momentum weight of the newest mean gradient")
            .with_traits(controls),
        [](Section& s, ProtocolParts& parts) { return std::make_unique<NodeSet>(make_scafcom(s, parts)); });
}

}  // namespace starling
