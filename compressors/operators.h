// Registration of the compression operators and the error-feedback wrapper.
#pragma once
#include <memory>
#include <string>

#include "compressors/compressor.h"

namespace starling {

void register_operators(CompressorRegistry& registry);
// Wraps `inner` for the section's `feedback` (none | ef | ef21 | econtrol, with `eta`).
std::unique_ptr<Compressor> with_feedback(std::unique_ptr<Compressor> inner, Section& section);
void require_finite(const Vector& v, const char* who);

}  // namespace starling
