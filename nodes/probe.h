// Probes: measurements that read several nodes at once (the decentralized RoundObserver, MoDeST's
// round record). A node hands its run's probe an Observation; the probe records global metrics
// from all of them. In the simulator every node and the probe share one process. Deployed, a node
// process relays its nodes' observations to the coordinator, and the coordinator's copy of the
// probe records them: one probe sees every node whatever process hosts it. Probes are the
// experimenter's instruments, not protocol traffic: their bytes count in no traffic metric.
#pragma once
#include <functional>
#include <vector>

#include "nodes/context.h"

namespace starling {

struct Observation {
  int round = 0;
  NodeId node = kNoNode;
  Vector model;                // the node's model (empty if the probe needs none)
  std::vector<double> values;  // the probe's numbers (RoundObserver: the train loss)
};

class Probe {
 public:
  virtual ~Probe() = default;

  // A node shows the probe `observation`: recorded here, or relayed if the runtime asked for it.
  void observe(Context& ctx, Observation observation) {
    if (relay_) return relay_(std::move(observation));
    record(ctx, std::move(observation));
  }
  // Deployed node processes: observations leave the process (set before the nodes start).
  void relay_to(std::function<void(Observation&&)> relay) { relay_ = std::move(relay); }

  // In the process that records the run's metrics; `ctx` serves metrics(), now(), finish_round()
  // and stop() (a node's context in the simulator, the coordinator's own deployed). Throws Error
  // on an observation that cannot be (wrong model size, a node seen twice in one round).
  virtual void record(Context& ctx, Observation observation) = 0;

 private:
  std::function<void(Observation&&)> relay_;
};

}  // namespace starling
