// Feedback wrappers around any operator (card 7.5-7.7): the wrapper's state lives in the
// per-node object, so each sender (and, for ef21/econtrol, each receiver) keeps its own.
#include <map>

#include "compressors/operators.h"

namespace starling {

namespace {

// EF (Seide et al.; Karimireddy et al.): send C(v + e) and keep e <- v + e - decode(C(v + e)).
// The receiver decodes as for the inner operator.
class ErrorFeedback final : public Compressor {
 public:
  explicit ErrorFeedback(std::unique_ptr<Compressor> inner) : inner_(std::move(inner)) {}
  Payload encode(const Vector& v, Rng& rng) override {
    if (residual_.size() != v.size()) residual_ = Vector::Zero(v.size());
    const Vector corrected = v + residual_;
    Payload out = inner_->encode(corrected, rng);
    residual_ = corrected - inner_->decode(out, v.size());
    return out;
  }
  Vector decode(const Payload& p, std::int64_t d) override { return inner_->decode(p, d); }
  bool linear() const override { return inner_->linear(); }
  Vector decode_mean(std::span<const Payload* const> payloads, std::span<const double> weights,
                     std::int64_t d) override {
    return inner_->decode_mean(payloads, weights, d);
  }
  std::unique_ptr<Compressor> clone() const override { return std::make_unique<ErrorFeedback>(inner_->clone()); }

 private:
  std::unique_ptr<Compressor> inner_;
  Vector residual_;
};

// EF21 (Richtárik, Sokolov, Fatkhullin 2021) and EControl (Gao, Islamov, Stich 2024), card 7.6-7.7.
// The sender keeps an estimate h of what it means to send and transmits only a compressed
// increment Delta; the receiver keeps the same h per sender by adding every Delta it receives:
//   ef21:     Delta = C(v - h)
//   econtrol: Delta = C(eta e + v - h),  e <- e + v - h - Delta   (eta = 0 is ef21; h = 0, eta = 1 is ef)
//   both:     h <- h + Delta
// Our EControl follows card 7.7's reconstruction (the two limiting cases above hold exactly);
// it was not checked line by line against the paper's Algorithm 1.
class EstimatorFeedback final : public Compressor {
 public:
  EstimatorFeedback(std::unique_ptr<Compressor> inner, bool control, double eta)
      : inner_(std::move(inner)), control_(control), eta_(static_cast<float>(eta)) {}
  Payload encode(const Vector& v, Rng& rng) override {
    require_finite(v, "feedback");
    if (estimate_.size() != v.size()) estimate_ = Vector::Zero(v.size()), error_ = Vector::Zero(v.size());
    const Vector innovation = v - estimate_;
    Payload out = inner_->encode(control_ ? Vector(innovation + eta_ * error_) : innovation, rng);
    const Vector delta = inner_->decode(out, v.size());
    if (control_) error_ += innovation - delta;
    estimate_ += delta;
    return out;
  }
  Vector decode(const Payload& p, std::int64_t d) override { return inner_->decode(p, d); }
  Vector receive(NodeId sender, const Payload& p, std::int64_t d) override {
    Vector& h = received_[sender];
    if (h.size() != d) h = Vector::Zero(d);
    h += inner_->decode(p, d);
    return h;
  }
  std::unique_ptr<Compressor> clone() const override {
    return std::make_unique<EstimatorFeedback>(inner_->clone(), control_, eta_);
  }

 private:
  std::unique_ptr<Compressor> inner_;
  bool control_;
  float eta_;
  Vector estimate_, error_;               // this node as a sender
  std::map<NodeId, Vector> received_;     // this node as a receiver: each sender's estimate
};

}  // namespace

const PluginSpec& compressor_common_spec() {
  static const PluginSpec spec = PluginSpec("compressor", "keys of every compressor section, whatever its kind")
                                     .choice("feedback", "none", {"none", "ef", "ef21", "econtrol"},
                                             "error feedback: none; ef (residual added to the next message); ef21 "
                                             "(estimate increments); econtrol (ef21 with error control eta)")
                                     .number("eta", 0.1, Range::between(0, 1), "econtrol's error-control step (feedback: econtrol only)");
  return spec;
}

std::unique_ptr<Compressor> with_feedback(std::unique_ptr<Compressor> inner, Section& section) {
  section.bind(compressor_common_spec());
  const auto feedback = section.text("feedback");
  if (feedback == "ef") return std::make_unique<ErrorFeedback>(std::move(inner));
  if (feedback == "ef21") return std::make_unique<EstimatorFeedback>(std::move(inner), false, 0.0);
  if (feedback == "econtrol")
    return std::make_unique<EstimatorFeedback>(std::move(inner), true, section.number("eta"));
  return inner;
}

}  // namespace starling
