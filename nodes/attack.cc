#include "nodes/attack.h"

#include <algorithm>
#include <cmath>

#include "core/rng.h"

namespace starling {

namespace {


// Per-coordinate mean of `vs` (in double, in the given order).
Eigen::VectorXd mean_of(std::span<const Vector* const> vs) {
  if (vs.empty()) throw Error("attack: no honest updates to imitate");
  Eigen::VectorXd mean = Eigen::VectorXd::Zero(vs.front()->size());
  for (const Vector* v : vs) mean += v->cast<double>();
  return mean / static_cast<double>(vs.size());
}

}  // namespace

const PluginSpec& attack_common_spec() {
  // Read (and checked) for kind none too, so that a sweep can set it once and vary the kind.
  static const PluginSpec spec = PluginSpec("attack", "keys of the attack section, whatever its kind")
                                     .number("fraction", 0.2, Range::between(0, 0.5), "fraction of the clients that are Byzantine (< 0.5)");
  return spec;
}

AttackRegistry& attack_registry() {
  static AttackRegistry registry = [] {
    AttackRegistry r("attack");
    const auto params = [](AttackKind kind) { return std::make_unique<AttackParams>(AttackParams{.kind = kind}); };
    r.add("none", "every client is honest", [=](Section&) { return params(AttackKind::kNone); });
    r.add(PluginSpec("sign_flip", "Byzantine clients send -scale times their honest update")
              .number("scale", 1.0, Range::at_least(0), "multiplier of the flipped update"),
          [=](Section& s) {
            auto p = params(AttackKind::kSignFlip);
            p->scale = s.number("scale");
            return p;
          });
    r.add(PluginSpec("scaled", "Byzantine clients send scale times their honest update (model replacement)")
              .number("scale", 10.0, Range::at_least(0), "multiplier of the update"),
          [=](Section& s) {
            auto p = params(AttackKind::kScaled);
            p->scale = s.number("scale");
            return p;
          });
    r.add(PluginSpec("gaussian", "Byzantine clients send N(0, std^2) noise").number("std", 1.0, Range::at_least(0), "noise standard deviation"),
          [=](Section& s) {
            auto p = params(AttackKind::kGaussian);
            p->std = s.number("std");
            return p;
          });
    r.add("label_flip", "Byzantine clients train honestly on labels c -> classes - 1 - c",
          [=](Section&) { return params(AttackKind::kLabelFlip); });
    r.add(PluginSpec("alie", "A Little Is Enough: the honest mean minus z honest standard deviations, coordinate-wise")
              .number("z", 0.0, Range::at_least(0), "deviations; 0: the paper's z_max from n and f"),
          [=](Section& s) {
            auto p = params(AttackKind::kAlie);
            p->z = s.number("z");
            return p;
          });
    r.add(PluginSpec("ipm", "inner-product manipulation: -epsilon times the honest mean")
              .number("epsilon", 0.1, Range::at_least(0), "scale of the negated honest mean"),
          [=](Section& s) {
            auto p = params(AttackKind::kIpm);
            p->epsilon = s.number("epsilon");
            return p;
          });
    return r;
  }();
  return registry;
}

AttackParams read_attack(Section s) {
  s.bind(attack_common_spec());
  const auto kind = s.get<std::string>("kind", "none");
  AttackParams p = *attack_registry().create(kind, s.path("kind"), s);
  // Below half: with a Byzantine majority no rule can tell who is honest.
  p.fraction = s.number("fraction");
  if (p.fraction >= 0.5) s.fail("fraction", Section::shortest(p.fraction) + " is out of range; must be in [0, 0.5)");
  return p;
}

std::vector<int> choose_attackers(double fraction, int clients, std::uint64_t seed) {
  const auto count = static_cast<std::int32_t>(std::lround(fraction * clients));
  Rng rng(seed, kNoNode, Purpose::kAttack);
  auto chosen = rng.sample_without_replacement(clients, count);
  std::vector<int> out(chosen.begin(), chosen.end());
  std::sort(out.begin(), out.end());
  return out;
}

Vector sign_flip(const Vector& honest, double scale) { return static_cast<float>(-scale) * honest; }

Vector alie(std::span<const Vector* const> honest, double z) {
  const Eigen::VectorXd mean = mean_of(honest);
  Eigen::VectorXd var = Eigen::VectorXd::Zero(mean.size());
  for (const Vector* v : honest) var += (v->cast<double>() - mean).cwiseAbs2();
  if (honest.size() > 1) var /= static_cast<double>(honest.size() - 1);
  return (mean - z * var.cwiseSqrt()).cast<float>();
}

double alie_default_z(int n, int f) {
  const int s = n / 2 + 1 - f;
  const double p = static_cast<double>(n - s) / n;
  if (p <= 0.0 || p >= 1.0) return 0.0;
  // Phi^-1(p) by bisection on Phi(x) = erfc(-x / sqrt 2) / 2: exact to double precision, no table.
  double lo = -40.0, hi = 40.0;
  for (int i = 0; i < 200; ++i) {
    const double mid = 0.5 * (lo + hi);
    (0.5 * std::erfc(-mid / std::sqrt(2.0)) < p ? lo : hi) = mid;
  }
  return std::max(0.0, 0.5 * (lo + hi));
}

Vector ipm(std::span<const Vector* const> honest, double epsilon) { return (-epsilon * mean_of(honest)).cast<float>(); }

void flip_labels(Dataset& data, std::span<const std::int32_t> indices) {
  for (auto i : indices) {
    auto& y = data.y[static_cast<std::size_t>(i)];
    y = data.num_classes - 1 - y;
  }
}

Attack::Attack(AttackParams params, std::vector<NodeId> attackers, std::uint64_t seed)
    : params_(params), attackers_(std::move(attackers)), seed_(seed) {
  std::sort(attackers_.begin(), attackers_.end());
}

bool Attack::is_attacker(NodeId node) const { return std::binary_search(attackers_.begin(), attackers_.end(), node); }

void Attack::corrupt(int round, std::map<NodeId, Vector*>& updates) const {
  corrupt(static_cast<std::uint64_t>(round), Updates(updates.begin(), updates.end()));
}

void Attack::corrupt(std::uint64_t round, const Updates& updates) const {
  std::vector<const Vector*> honest;
  std::vector<std::pair<NodeId, Vector*>> byzantine;
  for (const auto& [sender, u] : updates) {
    if (is_attacker(sender)) byzantine.emplace_back(sender, u);
    else honest.push_back(u);
  }
  if (byzantine.empty()) return;
  const auto n = static_cast<int>(updates.size()), f = static_cast<int>(byzantine.size());
  switch (params_.kind) {
    case AttackKind::kNone:
    case AttackKind::kLabelFlip: return;  // honest protocol, poisoned data
    case AttackKind::kSignFlip:
      for (auto& [sender, u] : byzantine) *u = sign_flip(*u, params_.scale);
      return;
    case AttackKind::kScaled:
      for (auto& [sender, u] : byzantine) *u *= static_cast<float>(params_.scale);
      return;
    case AttackKind::kGaussian: {
      std::map<NodeId, std::uint64_t> repeats;  // an attacker twice in one buffer sends fresh noise
      for (auto& [sender, u] : byzantine) {
        // One substream per (attacker, round): the noise does not depend on who else took part.
        Rng rng = Rng(seed_, sender, Purpose::kAttack).substream(round);
        if (const auto k = repeats[sender]++; k > 0) rng = rng.substream(k);
        for (auto& x : *u) x = static_cast<float>(params_.std * rng.normal());
      }
      return;
    }
    case AttackKind::kAlie:
    case AttackKind::kIpm: {
      // No honest update to imitate: the attackers imitate their own honest updates.
      std::vector<Vector> own;
      own.reserve(byzantine.size());  // `honest` points into it
      if (honest.empty())
        for (auto& [sender, u] : byzantine) own.push_back(*u), honest.push_back(&own.back());
      const Vector sent = params_.kind == AttackKind::kIpm
                              ? ipm(honest, params_.epsilon)
                              : alie(honest, params_.z > 0.0 ? params_.z : alie_default_z(n, f));
      for (auto& [sender, u] : byzantine) *u = sent;  // they collude: all send the same vector
      return;
    }
  }
}

std::shared_ptr<const Attack> make_attack(const AttackParams& params, const Partition& partition, Dataset& train,
                                          std::uint64_t seed, NodeId first_node) {
  if (params.kind == AttackKind::kNone) return nullptr;
  std::vector<NodeId> nodes;
  for (int c : choose_attackers(params.fraction, static_cast<int>(partition.size()), seed)) {
    if (params.kind == AttackKind::kLabelFlip) flip_labels(train, partition[static_cast<std::size_t>(c)]);
    nodes.push_back(static_cast<NodeId>(c) + first_node);
  }
  return std::make_shared<const Attack>(params, std::move(nodes), seed);
}

}  // namespace starling
