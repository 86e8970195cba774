#include "nodes/server_client.h"

#include <optional>

#include "learning/training.h"

namespace starling {

namespace {

class ServerClient final : public Node {
 public:
  ServerClient(const LearningTask& task, int client, const LocalWork& work, std::unique_ptr<Compressor> uplink,
               std::unique_ptr<Compressor> downlink, double noise_std)
      : task_(task), client_(client), work_(work), uplink_(std::move(uplink)), downlink_(std::move(downlink)),
        noise_std_(noise_std) {}

  void on_message(Context& ctx, Message&& m) override {
    if (m.kind != MessageKind::kModel) throw Error("client: unexpected " + std::string(to_string(m.kind)) + " message");
    if (training_) {  // still busy with an older model (a straggler the server gave up on)
      next_ = std::move(m);
      return;
    }
    train(ctx, m);
  }

  void on_compute_done(Context& ctx, int) override {
    Message reply;
    reply.kind = MessageKind::kUpdate;
    reply.round = round_;
    reply.receiver = 0;
    reply.num_samples = static_cast<std::int64_t>(task_.partition[static_cast<std::size_t>(client_)].size());
    reply.loss = static_cast<float>(stats_.mean_loss);
    reply.set_payload(std::move(update_));
    update_ = Payload();
    ctx.send(std::move(reply));
    training_ = false;
    if (next_) {
      Message m = std::move(*next_);
      next_.reset();
      train(ctx, m);
    }
  }

 private:
  void train(Context& ctx, const Message& m) {
    training_ = true;
    round_ = m.round;
    const auto& indices = task_.partition[static_cast<std::size_t>(client_)];
    std::int64_t steps = work_.steps;
    if (work_.max_steps > 0)
      steps += static_cast<std::int64_t>(
          ctx.rng(Purpose::kLocalSteps).below(static_cast<std::uint64_t>(work_.max_steps - work_.steps + 1)));
    // The whole client step (decode, train, encode the update) is one compute job: it runs on a
    // worker thread, with the model hot in that core's cache, and touches only this client's state.
    const auto n = static_cast<std::int64_t>(indices.size());
    const std::int64_t samples =
        steps > 0 ? samples_in_batches(n, task_.batch_size, steps) : std::int64_t{task_.local_epochs} * n;
    const int epochs = steps > 0 ? 1 << 30 : task_.local_epochs;
    ctx.compute(samples,
                [this, &indices, epochs, steps, model = m.payload, &shuffle = ctx.rng(Purpose::kDataShuffle),
                 &compression = ctx.rng(Purpose::kCompression), &noise = ctx.rng(Purpose::kLinkNoise)] {
                  const std::int64_t d = task_.model->num_params();
                  Vector global = downlink_->decode(*model, work_.scaffold ? 2 * d : d);
                  add_link_noise(global, noise_std_, noise);
                  Vector control;  // SCAFFOLD's global c, the tail of the model message
                  if (work_.scaffold) {
                    control = global.tail(d);
                    global.conservativeResize(d);
                    if (control_i_.size() == 0) control_i_ = Vector::Zero(d);
                  }
                  const Vector correction = work_.scaffold ? Vector(control - control_i_) : Vector();
                  Vector params = global;
                  auto optimizer = task_.optimizer->clone();
                  const GradientTerms terms{.prox_mu = task_.prox_mu,
                                            .anchor = &global,
                                            .correction = work_.scaffold ? &correction : nullptr};
                  stats_ = train_local(*task_.model, *optimizer, *task_.train, indices, epochs, task_.batch_size,
                                       shuffle, params, steps, terms);
                  if (work_.scaffold && stats_.batches > 0) {
                    Vector next = scaffold_client_control(control_i_, control, global, params, stats_.batches,
                                                          optimizer->lr());
                    params -= global;
                    update_ = uplink_->encode(concat(params, next - control_i_), compression);
                    control_i_ = std::move(next);
                    return;
                  }
                  params -= global;  // the update
                  if (work_.per_step) params /= static_cast<float>(steps);
                  update_ = uplink_->encode(work_.scaffold ? concat(params, Vector::Zero(d)) : params, compression);
                },
                round_);
  }

  const LearningTask& task_;
  int client_;
  LocalWork work_;
  std::unique_ptr<Compressor> uplink_, downlink_;
  Payload update_;  // the encoded update, between the end of training and the send
  Vector control_i_;  // SCAFFOLD's c_i (empty until the first round: zero)
  TrainStats stats_;
  int round_ = 0;
  double noise_std_;
  bool training_ = false;
  std::optional<Message> next_;  // the newest model that arrived during training
};

}  // namespace

void add_link_noise(Vector& v, double std, Rng& rng) {
  if (std == 0.0) return;
  for (Eigen::Index i = 0; i < v.size(); ++i) v[i] += static_cast<float>(std * rng.normal());
}

Vector scaffold_client_control(const Vector& c_i, const Vector& c, const Vector& x, const Vector& y,
                               std::int64_t steps, double lr) {
  return c_i - c + (x - y) / static_cast<float>(static_cast<double>(steps) * lr);
}

Vector concat(const Vector& a, const Vector& b) {
  Vector out(a.size() + b.size());
  out << a, b;
  return out;
}

NodeSet make_star_clients(const std::string& protocol, ProtocolParts& parts, const LocalWork& work) {
  const int clients = static_cast<int>(parts.task->partition.size());
  const Graph graph = parts.topology->build(clients + 1, parts.seed);
  if (graph.size() != clients + 1 || static_cast<int>(graph.neighbours[0].size()) != clients)
    throw ConfigError("topology.kind", protocol + " needs the star topology (node 0 is the server)");
  NodeSet set;
  set.nodes.push_back(nullptr);
  for (int c = 0; c < clients; ++c)
    set.nodes.push_back(
        std::make_unique<ServerClient>(*parts.task, c, work, parts.uplink->clone(), parts.downlink->clone(),
                                       parts.link_noise_std));
  return set;
}

}  // namespace starling
