#include "nodes/server_client.h"

#include <algorithm>
#include <optional>

#include "learning/training.h"

namespace starling {

namespace {

class ServerClient final : public Node, public HoldsControl {
 public:
  // `control_uplink`: scaffold's compressor for c_i+ - c_i (the uplink operator without feedback).
  ServerClient(const LearningTask& task, int client, const LocalWork& work, std::unique_ptr<Compressor> uplink,
               std::unique_ptr<Compressor> downlink, std::unique_ptr<Compressor> control_uplink, double noise_std)
      : task_(task), client_(client), work_(work), uplink_(std::move(uplink)), downlink_(std::move(downlink)),
        control_uplink_(std::move(control_uplink)),
        control_view_(control_uplink_ ? control_uplink_->clone()
                      : work.controls != Controls::kNone ? uplink_->clone() : nullptr),
        noise_std_(noise_std) {}

  const Vector& control() const override { return control_i_; }

  void on_message(Context& ctx, Message&& m) override {
    if (m.kind != MessageKind::kModel && !(work_.fedamd && m.kind == MessageKind::kAnchor))
      throw Error("client: unexpected " + std::string(to_string(m.kind)) + " message");
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
    if (work_.fedamd) return start_fedamd(ctx, m);
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
                  train_and_encode(*model, indices, epochs, steps, shuffle, compression, noise);
                },
                round_);
  }

  // Decode, train, encode the update: the body of the client's compute job.
  void train_and_encode(const Payload& model, std::span<const std::int32_t> indices, int epochs, std::int64_t steps,
                        Rng& shuffle, Rng& compression, Rng& noise) {
    const std::int64_t d = task_.model->num_params();
    const bool controls = work_.controls != Controls::kNone;
    Vector global = downlink_->decode(model, controls ? 2 * d : d);
    add_link_noise(global, noise_std_, noise);
    Vector control;  // the global c, the tail of the model message
    if (controls) {
      control = global.tail(d);
      global.conservativeResize(d);
      if (control_i_.size() == 0) control_i_ = Vector::Zero(d);
    }
    const Vector correction = controls ? Vector(control - control_i_) : Vector();
    Vector params = global;
    auto optimizer = task_.optimizer->clone();
    const GradientTerms terms{
        .prox_mu = task_.prox_mu, .anchor = &global, .correction = controls ? &correction : nullptr};
    stats_ = train_local(*task_.model, *optimizer, *task_.train, indices, epochs, task_.batch_size, shuffle, params,
                         steps, terms);
    switch (work_.controls) {
      case Controls::kNone:
        params -= global;  // the update
        if (work_.per_step) params /= static_cast<float>(steps);
        update_ = uplink_->encode(params, compression);
        return;
      case Controls::kScaffold: {
        // Two vectors, each through its own compressor: C(y - x) with the configured feedback, and
        // C(c_i+ - c_i) with the bare operator. c_i then moves by what the server decodes (c_i+
        // itself when uncompressed), as the server's c does, so c stays the mean of the c_i, and
        // the next c_i+ - c_i re-sends whatever this one left out: error feedback on that stream
        // would count it twice (measured: runs collapse).
        Vector dc = stats_.batches > 0 ? Vector(scaffold_client_control(control_i_, control, global, params,
                                                                        stats_.batches, optimizer->lr()) -
                                                control_i_)
                                       : Vector::Zero(d);
        params -= global;
        const Payload dy_bytes = uplink_->encode(params, compression);
        const Payload dc_bytes = control_uplink_->encode(dc, compression);
        control_i_ += control_view_->receive(0, dc_bytes, d);
        update_ = pack_pair(dy_bytes, dc_bytes);
        return;
      }
      case Controls::kScallion:
      case Controls::kScafcom: {
        // One vector: delta = C(g - c_i) (SCALLION) or C(v - c_i) (SCAFCOM), g the mean gradient of
        // the K local steps; the client adds alpha times what the server will decode to c_i, the
        // server (1/N) alpha times each to c, so c stays the mean of all c_i.
        // The server rebuilds y - x from the message with this K (control_displacement).
        if (stats_.batches != local_batches(static_cast<std::int64_t>(indices.size()), task_.batch_size, epochs, steps))
          throw Error("client: took " + std::to_string(stats_.batches) + " local steps, not the planned count");
        if (stats_.batches == 0) {  // no data: nothing learned, nothing to correct
          update_ = uplink_->encode(Vector::Zero(d), compression);
          return;
        }
        Vector message =
            scaffold_client_control(control_i_, control, global, params, stats_.batches, optimizer->lr());  // g
        if (work_.controls == Controls::kScafcom) {
          scafcom_momentum(momentum_, message, work_.beta);
          message = momentum_;
        }
        message -= control_i_;
        update_ = uplink_->encode(message, compression);
        control_i_ += static_cast<float>(work_.alpha) * control_view_->receive(0, update_, d);
        return;
      }
    }
  }

  // FedAMD's anchor (a large-batch gradient at x) or miner (SARAH steps from x along v_glob).
  void start_fedamd(Context& ctx, const Message& m) {
    const auto& indices = task_.partition[static_cast<std::size_t>(client_)];
    const auto n = static_cast<std::int64_t>(indices.size());
    auto& compression = ctx.rng(Purpose::kCompression);
    if (m.kind == MessageKind::kAnchor) {
      const std::int64_t take = work_.anchor_batch > 0 ? std::min(work_.anchor_batch, n) : n;
      ctx.compute(take,
                  [this, &indices, n, take, model = m.payload, &draw = ctx.rng(Purpose::kAnchor), &compression] {
                    const Vector x = downlink_->decode(*model, task_.model->num_params());
                    std::vector<std::int32_t> batch(indices.begin(), indices.end());
                    if (take < n) {  // a fresh uniform subset of the partition, without replacement
                      batch.clear();
                      for (auto i : draw.sample_without_replacement(static_cast<std::int32_t>(n), static_cast<std::int32_t>(take)))
                        batch.push_back(indices[static_cast<std::size_t>(i)]);
                      std::sort(batch.begin(), batch.end());
                    }
                    Vector gradient;
                    stats_ = TrainStats{.samples = take, .batches = 0,
                                        .mean_loss = batch_gradient(*task_.model, *task_.train, batch, x, gradient)};
                    update_ = uplink_->encode(gradient, compression);
                  },
                  round_);
      return;
    }
    // Every step but the first evaluates two gradients on its minibatch.
    const std::int64_t samples = 2 * samples_in_batches(n, task_.batch_size, work_.steps) -
                                 std::min<std::int64_t>(n, task_.batch_size);
    ctx.compute(std::max<std::int64_t>(samples, 0),
                [this, &indices, model = m.payload, &shuffle = ctx.rng(Purpose::kDataShuffle), &compression] {
                  const std::int64_t d = task_.model->num_params();
                  Vector x = downlink_->decode(*model, 2 * d);
                  Vector v = x.tail(d);
                  x.conservativeResize(d);
                  Vector y = x;
                  auto optimizer = task_.optimizer->clone();
                  stats_ = train_sarah(*task_.model, *optimizer, *task_.train, indices, task_.batch_size, shuffle, y, v,
                                       work_.steps);
                  y -= x;  // the update y - x: the server steps x <- x + eta_g mean(y - x)
                  update_ = uplink_->encode(y, compression);
                },
                round_);
  }

  const LearningTask& task_;
  int client_;
  LocalWork work_;
  std::unique_ptr<Compressor> uplink_, downlink_;
  std::unique_ptr<Compressor> control_uplink_;  // SCAFFOLD: the c_i+ - c_i stream's own compressor
  std::unique_ptr<Compressor> control_view_;    // the server's decoder of the control stream, mirrored
  Payload update_;  // the encoded update, between the end of training and the send
  Vector control_i_;  // c_i of the control-variate protocols (empty until the first round: zero)
  Vector momentum_;   // SCAFCOM's v (empty until the first round: zero)
  TrainStats stats_;
  int round_ = 0;
  double noise_std_;
  bool training_ = false;
  std::optional<Message> next_;  // the newest model that arrived during training
};

}  // namespace

void record_server_round(Context& ctx, const LearningTask& task, const Vector& model, int round, int rounds,
                         int eval_every, double participants, double train_loss) {
  auto& sink = ctx.metrics();
  const SimTime t = ctx.now();
  sink.metric(round, t, kNoNode, "participants", participants);
  sink.metric(round, t, kNoNode, "train_loss", train_loss);
  if (round % eval_every == 0 || round == rounds) {
    const auto eval = evaluate(*task.model, model, *task.test);
    sink.metric(round, t, kNoNode, "test_accuracy", eval.accuracy);
    sink.metric(round, t, kNoNode, "test_loss", eval.loss);
  }
}

void add_link_noise(Vector& v, double std, Rng& rng) {
  if (std == 0.0) return;
  for (Eigen::Index i = 0; i < v.size(); ++i) v[i] += static_cast<float>(std * rng.normal());
}

std::vector<std::int64_t> client_sizes(const LearningTask& task) {
  std::vector<std::int64_t> sizes;
  for (const auto& p : task.partition) sizes.push_back(static_cast<std::int64_t>(p.size()));
  return sizes;
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

Payload pack_pair(const Payload& a, const Payload& b) {
  if (a.size() > 0xffffffffu) throw Error("pack_pair: first payload over 4 GiB");
  Payload out(4 + a.size() + b.size());
  const auto n = static_cast<std::uint32_t>(a.size());
  for (int i = 0; i < 4; ++i) out[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(n >> (8 * i));
  std::copy(a.begin(), a.end(), out.begin() + 4);
  std::copy(b.begin(), b.end(), out.begin() + 4 + static_cast<std::ptrdiff_t>(a.size()));
  return out;
}

std::pair<Payload, Payload> unpack_pair(const Payload& p, const char* who) {
  if (p.size() < 4)
    throw Error(std::string(who) + ": a payload pair needs a 4-byte length, got " + std::to_string(p.size()) + " bytes");
  std::uint32_t n = 0;
  for (int i = 0; i < 4; ++i) n |= static_cast<std::uint32_t>(p[static_cast<std::size_t>(i)]) << (8 * i);
  if (n > p.size() - 4)
    throw Error(std::string(who) + ": first part of " + std::to_string(n) + " bytes does not fit a " +
                std::to_string(p.size()) + "-byte payload");
  const auto mid = p.begin() + 4 + static_cast<std::ptrdiff_t>(n);
  return {Payload(p.begin() + 4, mid), Payload(mid, p.end())};
}

std::int64_t local_batches(std::int64_t samples, int batch_size, int epochs, std::int64_t steps) {
  if (samples <= 0) return 0;
  return steps > 0 ? steps : std::int64_t{epochs} * ((samples + batch_size - 1) / batch_size);
}

void scafcom_momentum(Vector& v, const Vector& g, double beta) {
  if (v.size() != g.size()) v = Vector::Zero(g.size());
  v = static_cast<float>(1.0 - beta) * v + static_cast<float>(beta) * g;
}

Vector control_displacement(const Vector& c, const Vector& delta, std::int64_t steps, double lr) {
  return -static_cast<float>(static_cast<double>(steps) * lr) * (c + delta);
}

const Vector* control_variate(const Node& node) {
  const auto* holder = dynamic_cast<const HoldsControl*>(&node);
  return holder ? &holder->control() : nullptr;
}

NodeSet make_star_clients(const std::string& protocol, ProtocolParts& parts, const LocalWork& work) {
  const int clients = static_cast<int>(parts.task->partition.size());
  const Graph graph = parts.topology->build(clients + 1, parts.seed);
  if (graph.size() != clients + 1 || static_cast<int>(graph.neighbours[0].size()) != clients)
    throw ConfigError("topology.kind", protocol + " needs the star topology (node 0 is the server)");
  NodeSet set;
  set.nodes.push_back(nullptr);
  for (int c = 0; c < clients; ++c)
    set.nodes.push_back(std::make_unique<ServerClient>(
        *parts.task, c, work, parts.uplink->clone(), parts.downlink->clone(),
        work.controls == Controls::kScaffold ? parts.uplink_operator->clone() : nullptr, parts.link_noise_std));
  return set;
}

}  // namespace starling
