// Byzantine attacks (`attack:` config section): which clients attack, and what they send.
//
// Attackers are round(fraction * clients) clients drawn once from the run's kAttack stream.
// Data poisoning (label_flip) happens in their training data; every other attack replaces their
// update by what they send. Each protocol decides where that happens and what "the honest
// updates" an omniscient attack (ALIE, IPM) sees are (README, "Attacks"): FedAvg's server this
// round's updates, an asynchronous server its buffer, a D-PSGD or MoDeST receiver the models it
// aggregates, a gossip attacker its own model and the latest model of each honest in-neighbour.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/registry.h"
#include "core/section.h"
#include "core/types.h"
#include "learning/dataset.h"

namespace starling {

enum class AttackKind { kNone, kSignFlip, kGaussian, kScaled, kLabelFlip, kAlie, kIpm };

struct AttackParams {
  AttackKind kind = AttackKind::kNone;
  double fraction = 0.0;  // of the clients, in [0, 0.5)
  double scale = 1.0;     // sign_flip: -scale * update; scaled: scale * update
  double std = 1.0;       // gaussian
  double z = 0.0;         // alie; 0 = Baruch et al.'s z_max for the round's n and f
  double epsilon = 0.1;   // ipm
};

// Attack kinds by name: each factory reads its section into the parameters of its kind.
using AttackRegistry = Registry<AttackParams, Section&>;
AttackRegistry& attack_registry();
// The keys of the attack section whatever its kind: fraction.
const PluginSpec& attack_common_spec();

// Reads the `attack` section (kind none by default); bad values are ConfigErrors naming the key.
AttackParams read_attack(Section s);

// The attacking clients (indices in [0, clients)), ascending: round(fraction * clients) of them,
// drawn from the (seed, kAttack) stream.
std::vector<int> choose_attackers(double fraction, int clients, std::uint64_t seed);

// The attack functions themselves (pure, so they can be tested alone).
Vector sign_flip(const Vector& honest, double scale);
// Per coordinate: mean - z * std (sample std, n - 1) of `honest`.
Vector alie(std::span<const Vector* const> honest, double z);
// Baruch et al.'s z_max: s = floor(n / 2 + 1) - f supporters needed, z = Phi^-1((n - s) / n).
double alie_default_z(int n, int f);
// -epsilon * mean of `honest`.
Vector ipm(std::span<const Vector* const> honest, double epsilon);
// Labels y -> C - 1 - y of the samples `indices`.
void flip_labels(Dataset& data, std::span<const std::int32_t> indices);

// What a server applies to a round's updates.
class Attack {
 public:
  // `attackers`: node ids of the attacking clients.
  Attack(AttackParams params, std::vector<NodeId> attackers, std::uint64_t seed);

  const AttackParams& params() const { return params_; }
  bool is_attacker(NodeId node) const;
  // ALIE and IPM: what is sent depends on the honest updates, not on the attacker's own.
  bool omniscient() const { return params_.kind == AttackKind::kAlie || params_.kind == AttackKind::kIpm; }
  const std::vector<NodeId>& attackers() const { return attackers_; }
  // One vector per entry, by sender; a sender may appear more than once (an asynchronous buffer).
  using Updates = std::vector<std::pair<NodeId, Vector*>>;
  // Replaces the attackers' entries of `updates` with what they send; the other entries are the
  // honest updates the attack sees, read, never changed. `round` keys the gaussian noise: one
  // substream per (attacker, round), and per repeat of an attacker within one call.
  void corrupt(std::uint64_t round, const Updates& updates) const;
  // The same for one update per sender (this round's decoded updates of a synchronous server).
  void corrupt(int round, std::map<NodeId, Vector*>& updates) const;

 private:
  AttackParams params_;
  std::vector<NodeId> attackers_;  // ascending
  std::uint64_t seed_;
};

// The run's attack, or null for kind none: chooses the attackers among the `partition`'s clients
// (client c is node c + first_node) and poisons their samples of `train` (label_flip).
std::shared_ptr<const Attack> make_attack(const AttackParams& params, const Partition& partition, Dataset& train,
                                          std::uint64_t seed, NodeId first_node);

}  // namespace starling
