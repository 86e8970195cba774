// The event queue: a lean binary min-heap of small events.
//
// Ordering invariant: events run in increasing (time, seq); seq is a global insertion counter,
// so events due at the same instant run in the order they were scheduled. Nothing else
// (pointers, hash order, thread timing) decides what runs next.
#pragma once
#include <cstdint>
#include <vector>

#include "core/types.h"

namespace starling {

struct Event {
  SimTime time;
  std::uint64_t seq;
  std::uint32_t kind;  // what happens (the runtime's enum)
  NodeId node;         // the node it happens to
  std::uint64_t arg;   // kind-specific (a message slot, a timer tag, a job id)
};

class EventQueue {
 public:
  void push(SimTime time, std::uint32_t kind, NodeId node, std::uint64_t arg) {
    heap_.push_back(Event{time, next_seq_++, kind, node, arg});
    sift_up(heap_.size() - 1);
  }
  bool empty() const { return heap_.empty(); }
  std::size_t size() const { return heap_.size(); }
  const Event& top() const { return heap_.front(); }
  Event pop() {
    Event out = heap_.front();
    heap_.front() = heap_.back();
    heap_.pop_back();
    if (!heap_.empty()) sift_down(0);
    return out;
  }
  void reserve(std::size_t n) { heap_.reserve(n); }

 private:
  static bool before(const Event& a, const Event& b) { return a.time < b.time || (a.time == b.time && a.seq < b.seq); }
  void sift_up(std::size_t i) {
    const Event e = heap_[i];
    while (i > 0) {
      const std::size_t parent = (i - 1) / 2;
      if (!before(e, heap_[parent])) break;
      heap_[i] = heap_[parent];
      i = parent;
    }
    heap_[i] = e;
  }
  void sift_down(std::size_t i) {
    const Event e = heap_[i];
    const std::size_t n = heap_.size();
    while (true) {
      std::size_t child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && before(heap_[child + 1], heap_[child])) ++child;
      if (!before(heap_[child], e)) break;
      heap_[i] = heap_[child];
      i = child;
    }
    heap_[i] = e;
  }

  std::vector<Event> heap_;
  std::uint64_t next_seq_ = 0;
};

}  // namespace starling
