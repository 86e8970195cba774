// Compressors turn a vector into the exact bytes that travel on the wire and back.
// The simulator charges the size of those bytes; the gRPC deployment sends the same bytes.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "core/registry.h"
#include "core/rng.h"
#include "core/section.h"
#include "core/types.h"

namespace starling {

using Payload = std::vector<std::uint8_t>;

class Compressor {
 public:
  virtual ~Compressor() = default;
  virtual Payload encode(const Vector& v, Rng& rng) = 0;
  // Throws Error if the bytes are not a valid encoding of a `dim`-vector (bad network input).
  virtual Vector decode(const Payload& payload, std::int64_t dim) = 0;
  // A fresh object with the same settings: compressor state (residuals) is per node.
  virtual std::unique_ptr<Compressor> clone() const = 0;
};

// Little-endian IEEE float32, 4 bytes per coordinate: the uncompressed encoding.
Payload encode_fp32(const Vector& v);
Vector decode_fp32(const Payload& payload, std::int64_t dim);

using CompressorRegistry = Registry<Compressor, Section&>;
CompressorRegistry& compressor_registry();

// The operator a config section names (`kind`, default none) with its parameters, wrapped for
// `feedback` (none | ef).
std::unique_ptr<Compressor> make_compressor(Section& section);

}  // namespace starling
