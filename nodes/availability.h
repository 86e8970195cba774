// Which nodes are reachable when: a read-only model shared by the runtime (which enforces it:
// an offline node receives nothing, sends nothing, and a compute job that overlaps an offline
// moment is lost) and the protocol (whose server must not send work to offline clients). The
// simulator's models (always, Markov on/off, trace file) live in sim/availability.h.
#pragma once
#include "core/types.h"

namespace starling {

class Availability {
 public:
  virtual ~Availability() = default;
  // Node `node` is online at virtual time `t`.
  virtual bool online(NodeId node, SimTime t) const = 0;
  // Node `node` is online during the whole of [from, to].
  virtual bool online_throughout(NodeId node, SimTime from, SimTime to) const = 0;
};

}  // namespace starling
