// Registration of the compression operators and the error-feedback wrapper.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "compressors/compressor.h"

namespace starling {

void register_operators(CompressorRegistry& registry);
// Wraps `inner` for the section's `feedback` (none | ef | ef21 | econtrol, with `eta`).
std::unique_ptr<Compressor> with_feedback(std::unique_ptr<Compressor> inner, Section& section);
void require_finite(const Vector& v, const char* who);
// k distinct indices of [0, d), sorted, drawn from `seed` alone: senders send the seed instead.
std::vector<std::uint32_t> draw_indices(std::uint64_t seed, std::int64_t k, std::int64_t d);
// Operators in their own files.
void register_sketches(CompressorRegistry& registry);   // count_sketch, random_projection
void register_low_rank(CompressorRegistry& registry);   // powersgd

}  // namespace starling
