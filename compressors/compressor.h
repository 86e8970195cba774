// Compressors turn a vector into the exact bytes that travel on the wire and back.
// The simulator charges the size of those bytes; the gRPC deployment sends the same bytes.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
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
  // Operators override decode or decode_into (or both); each defaults to the other.
  virtual Vector decode(const Payload& payload, std::int64_t dim) {
    Vector v;
    decode_into(payload, dim, v);
    return v;
  }
  // Decodes into `out`, reusing its memory when it already has `dim` entries: a receiver that
  // keeps its buffer avoids allocating, and page-faulting in, a fresh vector per message (for
  // d = 10^7 that costs as much as the decoding). On error `out`'s contents are unspecified.
  virtual void decode_into(const Payload& payload, std::int64_t dim, Vector& out) { out = decode(payload, dim); }
  // What a receiver makes of `sender`'s message: the decoded vector, except for feedback schemes
  // whose messages are increments of a per-sender estimate (ef21, econtrol): then this object,
  // the receiver's, keeps the estimate per sender and returns it.
  virtual Vector receive(NodeId sender, const Payload& payload, std::int64_t dim) {
    (void)sender;
    return decode(payload, dim);
  }
  // Linear operators (count_sketch) can add encodings before decoding once, as FetchSGD's server
  // does: decode_mean returns the weighted mean reconstructed from the weighted mean of the
  // encodings. Others decode each payload and average.
  virtual bool linear() const { return false; }
  virtual Vector decode_mean(std::span<const Payload* const> payloads, std::span<const double> weights,
                             std::int64_t dim);
  // omega for an unbiased operator on `dim`-vectors: E[C(v)] = v and E||C(v) - v||^2 <= omega ||v||^2
  // (SCALLION's alpha = 1 / (1 + omega)); nullopt for a biased one. none, fp16 and bf16 report 0
  // (the casts' only bias is deterministic rounding).
  virtual std::optional<double> unbiased_variance(std::int64_t dim) const {
    (void)dim;
    return std::nullopt;
  }
  // A fresh object with the same settings: compressor state (residuals) is per node.
  virtual std::unique_ptr<Compressor> clone() const = 0;
};

// What a compressor kind declares of itself (its PluginSpec's traits), for the docs and for the
// protocols' requirements: scaffold's downlink, for one, needs a dense codec.
struct CompressorTraits {
  bool dense = false;        // every coordinate travels (at most its precision changes): fits any payload layout
  bool lossless = false;     // decode(encode(v)) == v bit for bit
  std::string unbiased{};    // empty when biased; else when and how: "E[C(v)] = v, omega = d/k - 1"
  bool contractive = false;  // ||C(v) - v||^2 <= (1 - delta) ||v||^2 for some delta > 0
  bool linear = false;       // C(a) + C(b) = C(a + b): encodings add before decoding
};

// The kinds whose traits satisfy `pred`, for generated messages ("none, fp16, bf16").
std::string compressor_kinds_where(bool (*pred)(const CompressorTraits&));

// The keys every compressor section takes whatever its kind: feedback and eta.
const PluginSpec& compressor_common_spec();

// Little-endian IEEE float32, 4 bytes per coordinate: the uncompressed encoding.
Payload encode_fp32(const Vector& v);
Vector decode_fp32(const Payload& payload, std::int64_t dim);

// Operators by name: factory(section, the model's tensors). Tensor shapes matter to low-rank
// operators (powersgd); the others see one flat vector.
using CompressorRegistry = Registry<Compressor, Section&, std::span<const TensorShape>>;
CompressorRegistry& compressor_registry();

// The operator a config section names (`kind`, default none) with its parameters, wrapped for
// `feedback` (none | ef | ef21 | econtrol).
std::unique_ptr<Compressor> make_compressor(Section& section, std::span<const TensorShape> tensors = {});

}  // namespace starling
