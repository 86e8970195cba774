#include "compressors/compressor.h"

#include "compressors/operators.h"

#include <bit>
#include <algorithm>
#include <cstring>

namespace starling {

static_assert(std::endian::native == std::endian::little, "the wire format is little-endian; add byte swapping here");

Payload encode_fp32(const Vector& v) {
  const auto* bytes = reinterpret_cast<const std::uint8_t*>(v.data());
  return Payload(bytes, bytes + static_cast<std::size_t>(v.size()) * sizeof(float));  // one pass, no zero-fill
}

Vector decode_fp32(const Payload& payload, std::int64_t dim) {
  if (payload.size() != static_cast<std::size_t>(dim) * sizeof(float))
    throw Error("malformed fp32 payload: " + std::to_string(payload.size()) + " bytes for a vector of " +
                std::to_string(dim) + " floats");
  Vector v(dim);
  if (dim > 0) std::memcpy(v.data(), payload.data(), payload.size());
  return v;
}

std::vector<std::uint32_t> draw_indices(std::uint64_t seed, std::int64_t k, std::int64_t d) {
  Rng rng(seed, kNoNode, Purpose::kCompression);
  std::vector<std::uint64_t> chosen(static_cast<std::size_t>((d + 63) / 64));  // Floyd's algorithm over a bitmap
  const auto test_and_set = [&](std::uint64_t i) {
    const std::uint64_t bit = std::uint64_t{1} << (i % 64), was = chosen[i / 64] & bit;
    chosen[i / 64] |= bit;
    return was != 0;
  };
  for (std::int64_t j = d - k; j < d; ++j) {
    const std::uint64_t t = rng.below(static_cast<std::uint64_t>(j + 1));
    if (test_and_set(t)) test_and_set(static_cast<std::uint64_t>(j));
  }
  std::vector<std::uint32_t> out;
  out.reserve(static_cast<std::size_t>(k));
  for (std::size_t w = 0; w < chosen.size(); ++w)
    for (std::uint64_t word = chosen[w]; word; word &= word - 1)
      out.push_back(static_cast<std::uint32_t>(64 * w + static_cast<std::size_t>(std::countr_zero(word))));
  return out;
}

Vector Compressor::decode_mean(std::span<const Payload* const> payloads, std::span<const double> weights,
                               std::int64_t dim) {
  Vector sum = Vector::Zero(dim);
  double total = 0.0;
  for (std::size_t i = 0; i < payloads.size(); ++i) {
    sum += static_cast<float>(weights[i]) * decode(*payloads[i], dim);
    total += weights[i];
  }
  if (total > 0.0) sum /= static_cast<float>(total);
  return sum;
}

namespace {
class NoCompression final : public Compressor {
 public:
  Payload encode(const Vector& v, Rng&) override { return encode_fp32(v); }  // lossless, NaN and inf included
  Vector decode(const Payload& p, std::int64_t dim) override { return decode_fp32(p, dim); }
  void decode_into(const Payload& p, std::int64_t dim, Vector& out) override {
    if (p.size() != static_cast<std::size_t>(dim) * sizeof(float)) out = decode_fp32(p, dim);  // its error
    out.resize(dim);
    if (dim > 0) std::memcpy(out.data(), p.data(), p.size());
  }
  std::optional<double> unbiased_variance(std::int64_t) const override { return 0.0; }
  std::unique_ptr<Compressor> clone() const override { return std::make_unique<NoCompression>(); }
};
}  // namespace

CompressorRegistry& compressor_registry() {
  static CompressorRegistry registry = [] {
    CompressorRegistry r("compressor");
    r.add(PluginSpec("none", "dense float32, 4 bytes per coordinate")
              .with_traits(CompressorTraits{.dense = true, .lossless = true, .unbiased = "exact", .contractive = true, .linear = true}),
          [](Section&, std::span<const TensorShape>) { return std::make_unique<NoCompression>(); });
    register_operators(r);
    register_sketches(r);
    register_low_rank(r);
    return r;
  }();
  return registry;
}

std::string compressor_kinds_where(bool (*pred)(const CompressorTraits&)) {
  std::string out;
  for (const PluginSpec* spec : compressor_registry().specs())
    if (pred(spec->traits<CompressorTraits>())) out += (out.empty() ? "" : ", ") + spec->name();
  return out;
}

std::unique_ptr<Compressor> make_compressor(Section& section, std::span<const TensorShape> tensors) {
  section.bind(compressor_common_spec());
  const auto kind = section.get<std::string>("kind", "none");
  return with_feedback(compressor_registry().create(kind, section.path("kind"), section, tensors), section);
}

}  // namespace starling
