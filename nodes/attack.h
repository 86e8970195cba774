// Byzantine attacks (`attack:` config section): which clients attack, and what they send.
//
// Attackers are round(fraction * clients) clients drawn once from the run's kAttack stream.
// Data poisoning (label_flip) happens in their training data; every other attack replaces their
// update at the server, just before aggregation (a simulation shortcut: the message a client
// would have sent is the one the server sees). ALIE and IPM are omniscient: they are computed
// from this round's honest updates.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

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
  const std::vector<NodeId>& attackers() const { return attackers_; }
  // Replaces the attackers' entries of `updates` (this round's decoded updates, by sender) with
  // what they send. Honest entries are read, never changed.
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
