// FedAvg (McMahan et al., 2017) as message handlers, and SCAFFOLD (Karimireddy et al., 2020) as
// the same rounds with a global control variate c sent along with the model.
#include <map>
#include <set>

#include "learning/training.h"
#include "nodes/server_client.h"

namespace starling {

namespace {

class FedAvgServer final : public Node {
 public:
  FedAvgServer(ProtocolParts& parts, bool scaffold, SimTime round_deadline)
      : task_(*parts.task), scaffold_(scaffold), rounds_(parts.rounds), eval_every_(parts.eval_every),
        round_deadline_(round_deadline), model_(parts.initial_model),
        sampler_(std::move(parts.sampler)), aggregator_(std::move(parts.aggregator)),
        optimizer_(std::move(parts.server_optimizer)), downlink_(parts.downlink->clone()),
        uplink_decoder_(parts.uplink->clone()), attack_(parts.attack),
        // An attack replaces decoded updates, so each one is decoded.
        sum_encodings_(uplink_decoder_->linear() && aggregator_->is_weighted_mean() && !attack_ && !scaffold),
        clients_(static_cast<int>(parts.task->partition.size())) {
    if (scaffold_) control_ = Vector::Zero(model_.size());
  }

  void on_start(Context& ctx) override {
    if (attack_)  // who was Byzantine, for the results (committed with round 1)
      for (NodeId a : attack_->attackers()) ctx.metrics().metric(0, ctx.now(), a, "byzantine", 1.0);
    start_round(ctx, 1);
  }

  void on_message(Context& ctx, Message&& m) override {
    // With a deadline, an update that arrives after its round closed is dropped.
    if (round_deadline_ > 0 && m.kind == MessageKind::kUpdate && m.round >= 1 && m.round < round_) return;
    if (m.kind != MessageKind::kUpdate || m.round != round_ || !expected_.count(m.sender) || updates_.count(m.sender))
      throw Error("fedavg server: unexpected " + std::string(to_string(m.kind)) + " message from node " +
                  std::to_string(m.sender) + " in round " + std::to_string(m.round));
    // Decoded before it is stored: a malformed payload throws and leaves the round as it was.
    Received u;
    if (sum_encodings_) u.encoded = m.payload;
    else u.update = uplink_decoder_->receive(m.sender, m.payload_bytes(), scaffold_ ? 2 * model_.size() : model_.size());
    if (scaffold_) {  // [dy; dc]: dy goes through the aggregator as FedAvg's update, dc is summed
      u.control = u.update.tail(model_.size());
      u.update.conservativeResize(model_.size());
    }
    u.samples = m.num_samples;
    u.loss = m.loss;
    updates_.emplace(m.sender, std::move(u));
    if (updates_.size() == expected_.size()) finish_round(ctx);
  }

  // The round's deadline: aggregate what arrived (clients that crashed or straggle are left out).
  void on_timer(Context& ctx, int tag) override {
    if (tag == round_ && !done_) finish_round(ctx);
  }

 private:
  struct Received {
    Vector update;
    std::shared_ptr<const Payload> encoded;  // kept instead of `update` when encodings are summed
    Vector control;                          // SCAFFOLD: the client's dc
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
    m.set_payload(downlink_->encode(scaffold_ ? concat(model_, control_) : model_, ctx.rng(Purpose::kCompression)));
    for (int c : sampler_->sample(round, clients_, ctx.rng(Purpose::kSampling))) {
      m.receiver = c + 1;
      expected_.insert(m.receiver);
      ctx.send(m);
    }
    if (round_deadline_ > 0) ctx.set_timer(round_deadline_, round);
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
    if (!contributions.empty())  // (only after a deadline passed with no update in)
      optimizer_->apply(model_, sum_encodings_ ? uplink_decoder_->decode_mean(encoded, weights, model_.size())
                                               : aggregator_->combine(contributions));
    if (scaffold_ && !updates_.empty()) {  // c += (|S|/N) mean_S dc: what keeps c the mean of all N clients' c_i
      // Summed in sender order, whatever order the updates arrived in (the deployed run's too).
      Vector control_sum = Vector::Zero(model_.size());
      for (const auto& [sender, u] : updates_) control_sum += u.control;
      control_ += control_sum / static_cast<float>(clients_);
    }
    updates_.clear();
    record_server_round(ctx, task_, model_, round_, rounds_, eval_every_, static_cast<double>(contributions.size()),
                        samples > 0 ? loss_sum / samples : 0.0);
    ctx.finish_round(round_);
    if (round_ == rounds_) {
      done_ = true;
      ctx.stop();
    } else {
      start_round(ctx, round_ + 1);
    }
  }

  const LearningTask& task_;
  bool scaffold_;
  int rounds_, eval_every_;
  SimTime round_deadline_;  // 0: wait for every sampled client
  Vector model_;
  Vector control_;  // SCAFFOLD: the global control variate c
  std::unique_ptr<ClientSampler> sampler_;
  std::unique_ptr<Aggregator> aggregator_;
  std::unique_ptr<ServerOptimizer> optimizer_;
  std::unique_ptr<Compressor> downlink_, uplink_decoder_;
  std::shared_ptr<const Attack> attack_;
  bool sum_encodings_;  // linear uplink (sketches) + mean: average the encodings, decode once (FetchSGD)
  int clients_;
  int round_ = 0;
  bool done_ = false;
  std::set<NodeId> expected_;
  std::map<NodeId, Received> updates_;
};

}  // namespace

namespace {

NodeSet make_rounds(const std::string& name, Section& protocol, ProtocolParts& parts, bool scaffold) {
  NodeSet set = make_star_clients(
      name, parts, LocalWork{.steps = protocol.get_int("local_steps", 0, 0), .scaffold = scaffold});
  const SimTime deadline = from_seconds(protocol.get_double("round_deadline_s", 0.0, 0.0));
  set.nodes[0] = std::make_unique<FedAvgServer>(parts, scaffold, deadline);  // last: the server takes the parts it owns
  return set;
}

}  // namespace

NodeSet make_fedavg(Section& protocol, ProtocolParts& parts) { return make_rounds("fedavg", protocol, parts, false); }

NodeSet make_scaffold(Section& protocol, ProtocolParts& parts) { return make_rounds("scaffold", protocol, parts, true); }

}  // namespace starling
