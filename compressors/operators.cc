// The compression operators (card 7). Each encoding is exact bytes; sizes are documented in
// README "Compressors" and checked by the conformance tests.
#include <algorithm>
#include <bit>
#include <cmath>
#include <numeric>
#include <unordered_set>

#include "compressors/compressor.h"
#include "compressors/operators.h"
#include "compressors/wire.h"

namespace starling {

void require_finite(const Vector& v, const char* who) {
  if (!v.allFinite()) throw Error(std::string(who) + " compressor: the vector holds NaN or infinite values");
}

namespace {

// ---------------------------------------------------------------- half-precision casts

std::uint16_t float_to_half(float f) {  // IEEE binary16, round to nearest even
  const auto x = std::bit_cast<std::uint32_t>(f);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  const std::uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u));
  if (abs >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // overflows to infinity
  if (abs < 0x38800000u) {  // subnormal half (or zero)
    const std::uint32_t mantissa = (abs & 0x7fffffu) | 0x800000u;
    const int shift = 126 - static_cast<int>(abs >> 23);  // half subnormal = mantissa24 * 2^(e - 126) / 2^-24
    if (shift > 24) return static_cast<std::uint16_t>(sign);
    const std::uint32_t half = mantissa >> shift;
    const std::uint32_t rest = mantissa & ((1u << shift) - 1), mid = 1u << (shift - 1);
    return static_cast<std::uint16_t>(sign | (half + (rest > mid || (rest == mid && (half & 1u)))));
  }
  const std::uint32_t biased = abs - 0x38000000u;  // rebias exponent 127 -> 15
  const std::uint32_t half = biased >> 13, rest = biased & 0x1fffu;
  return static_cast<std::uint16_t>(sign | (half + (rest > 0x1000u || (rest == 0x1000u && (half & 1u)))));
}

float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = (h & 0x8000u) << 16, exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu;
  if (exponent == 0) {
    const float value = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -value : value;
  }
  if (exponent == 31) return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  return std::bit_cast<float>(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

std::uint16_t float_to_bf16(float f) {  // upper 16 bits, round to nearest even
  const auto x = std::bit_cast<std::uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((x >> 16) | 0x40u);  // keep NaN a NaN
  return static_cast<std::uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

float bf16_to_float(std::uint16_t b) { return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16); }

template <std::uint16_t (*Encode)(float), float (*Decode)(std::uint16_t)>
class Cast16 final : public Compressor {
 public:
  explicit Cast16(const char* name) : name_(name) {}
  Payload encode(const Vector& v, Rng&) override {
    require_finite(v, name_);
    Payload out(static_cast<std::size_t>(v.size()) * 2);
    for (Eigen::Index i = 0; i < v.size(); ++i) {
      const std::uint16_t h = Encode(v[i]);
      std::memcpy(out.data() + 2 * i, &h, 2);
    }
    return out;
  }
  Vector decode(const Payload& p, std::int64_t dim) override {
    if (p.size() != static_cast<std::size_t>(dim) * 2) ByteReader(p, name_).fail("size does not match the model");
    Vector v(dim);
    for (std::int64_t i = 0; i < dim; ++i) {
      std::uint16_t h;
      std::memcpy(&h, p.data() + 2 * i, 2);
      v[i] = Decode(h);
    }
    return v;
  }
  std::unique_ptr<Compressor> clone() const override { return std::make_unique<Cast16>(name_); }

 private:
  const char* name_;
};

// ---------------------------------------------------------------- sparse index coding

std::size_t varint_size(std::uint64_t v) {
  std::size_t n = 1;
  while (v >>= 7) ++n;
  return n;
}

// Writes sorted `indices` of a d-vector in the smallest of three codings (tag byte first):
// 0 = 32-bit indices, 1 = delta varints, 2 = a bitmap of d bits.
void put_indices(ByteWriter& w, const std::vector<std::uint32_t>& indices, std::int64_t d) {
  const std::size_t raw = 4 * indices.size(), bitmap = static_cast<std::size_t>((d + 7) / 8);
  std::size_t varints = 0;
  std::uint32_t previous = 0;
  for (auto i : indices) varints += varint_size(i - previous), previous = i;
  const std::size_t best = std::min({raw, varints, bitmap});
  if (best == raw) {
    w.put<std::uint8_t>(0);
    for (auto i : indices) w.put<std::uint32_t>(i);
  } else if (best == varints) {
    w.put<std::uint8_t>(1);
    previous = 0;
    for (auto i : indices) w.put_varint(i - previous), previous = i;
  } else {
    w.put<std::uint8_t>(2);
    const auto at = w.bytes().size();
    w.bytes().resize(at + bitmap, 0);
    for (auto i : indices) w.bytes()[at + i / 8] |= static_cast<std::uint8_t>(1u << (i % 8));
  }
}

std::vector<std::uint32_t> get_indices(ByteReader& r, std::size_t k, std::int64_t d) {
  std::vector<std::uint32_t> out;
  out.reserve(k);
  const auto tag = r.get<std::uint8_t>();
  if (tag == 0) {
    for (std::size_t j = 0; j < k; ++j) out.push_back(r.get<std::uint32_t>());
  } else if (tag == 1) {
    std::uint64_t at = 0;
    for (std::size_t j = 0; j < k; ++j) out.push_back(static_cast<std::uint32_t>(at += r.get_varint()));
  } else if (tag == 2) {
    const auto* bits = r.take(static_cast<std::size_t>((d + 7) / 8));
    for (std::int64_t i = 0; i < d; ++i)
      if (bits[i / 8] >> (i % 8) & 1u) out.push_back(static_cast<std::uint32_t>(i));
    if (out.size() != k) r.fail("bitmap holds " + std::to_string(out.size()) + " indices, header says " + std::to_string(k));
  } else {
    r.fail("unknown index coding " + std::to_string(tag));
  }
  for (std::size_t j = 0; j < out.size(); ++j)
    if (out[j] >= d || (j > 0 && out[j] <= out[j - 1])) r.fail("indices out of range or not increasing");
  return out;
}

std::int64_t count_from(double ratio, std::int64_t k, std::int64_t d) {
  if (k > 0) return std::min(k, d);
  return std::clamp<std::int64_t>(static_cast<std::int64_t>(std::llround(ratio * static_cast<double>(d))), d > 0 ? 1 : 0, d);
}

// ---------------------------------------------------------------- top-k

// The k largest |v_j| (ties: lower index first), by exact partial selection (nth_element, O(d)).
// Payload: u32 k, k float32 values (in index order), then the indices (put_indices).
class TopK final : public Compressor {
 public:
  TopK(double ratio, std::int64_t k) : ratio_(ratio), k_(k) {}
  Payload encode(const Vector& v, Rng&) override {
    require_finite(v, "topk");
    const std::int64_t d = v.size(), k = count_from(ratio_, k_, d);
    std::vector<std::uint32_t> idx(static_cast<std::size_t>(d));
    std::iota(idx.begin(), idx.end(), 0u);
    const auto larger = [&](std::uint32_t a, std::uint32_t b) {
      const float fa = std::abs(v[a]), fb = std::abs(v[b]);
      return fa > fb || (fa == fb && a < b);
    };
    std::nth_element(idx.begin(), idx.begin() + k, idx.end(), larger);
    idx.resize(static_cast<std::size_t>(k));
    std::sort(idx.begin(), idx.end());
    Payload out;
    ByteWriter w(out);
    w.put<std::uint32_t>(static_cast<std::uint32_t>(k));
    for (auto i : idx) w.put<float>(v[i]);
    put_indices(w, idx, d);
    return out;
  }
  Vector decode(const Payload& p, std::int64_t d) override {
    ByteReader r(p, "topk");
    const auto k = r.get<std::uint32_t>();
    if (k > d) r.fail("k exceeds the model size");
    std::vector<float> values(k);
    r.get_floats(values.data(), k);
    const auto idx = get_indices(r, k, d);
    r.expect_end();
    Vector out = Vector::Zero(d);
    for (std::size_t j = 0; j < idx.size(); ++j) out[idx[j]] = values[j];
    return out;
  }
  std::unique_ptr<Compressor> clone() const override { return std::make_unique<TopK>(ratio_, k_); }

 private:
  double ratio_;
  std::int64_t k_;
};

// ---------------------------------------------------------------- rand-k

// k indices drawn from a seed that travels instead of them (the receiver redraws them);
// unbiased: values scaled by d / k. Payload: u64 seed, u32 k, k float32 values.
class RandK final : public Compressor {
 public:
  RandK(double ratio, std::int64_t k, bool unbiased) : ratio_(ratio), k_(k), unbiased_(unbiased) {}
  Payload encode(const Vector& v, Rng& rng) override {
    require_finite(v, "randk");
    const std::int64_t d = v.size(), k = count_from(ratio_, k_, d);
    const std::uint64_t seed = rng.next_u64();
    const float scale = unbiased_ && k > 0 ? static_cast<float>(static_cast<double>(d) / static_cast<double>(k)) : 1.0f;
    Payload out;
    ByteWriter w(out);
    w.put<std::uint64_t>(seed);
    w.put<std::uint32_t>(static_cast<std::uint32_t>(k));
    for (auto i : draw_indices(seed, k, d)) w.put<float>(scale * v[i]);
    return out;
  }
  Vector decode(const Payload& p, std::int64_t d) override {
    ByteReader r(p, "randk");
    const auto seed = r.get<std::uint64_t>();
    const auto k = r.get<std::uint32_t>();
    if (k > d) r.fail("k exceeds the model size");
    Vector out = Vector::Zero(d);
    for (auto i : draw_indices(seed, k, d)) out[i] = r.get<float>();
    r.expect_end();
    return out;
  }
  std::unique_ptr<Compressor> clone() const override { return std::make_unique<RandK>(ratio_, k_, unbiased_); }

 private:
  double ratio_;
  std::int64_t k_;
  bool unbiased_;
};

// ---------------------------------------------------------------- QSGD

// Per bucket of b coordinates: its L2 norm (float32), then for each coordinate a sign bit and a
// level in 0..s (ceil(log2(s + 1)) bits), stochastically rounded so that E[Q(v)] = v; all the
// bits packed LSB-first after the norms. Bytes: 4 * ceil(d / b) + ceil(d * (1 + ceil(log2(s+1))) / 8).
class Qsgd final : public Compressor {
 public:
  Qsgd(int levels, int bucket) : s_(levels), bucket_(bucket), level_bits_(std::bit_width(static_cast<unsigned>(levels))) {}
  Payload encode(const Vector& v, Rng& rng) override {
    require_finite(v, "qsgd");
    const std::int64_t d = v.size(), buckets = (d + bucket_ - 1) / bucket_;
    const int bits = 1 + level_bits_;
    Payload out(static_cast<std::size_t>(4 * buckets + (d * bits + 7) / 8), 0);
    std::uint8_t* packed = out.data() + 4 * buckets;
    std::int64_t bit = 0;
    for (std::int64_t b = 0; b < buckets; ++b) {
      const std::int64_t begin = b * bucket_, n = std::min<std::int64_t>(bucket_, d - begin);
      const float norm = v.segment(begin, n).norm();
      std::memcpy(out.data() + 4 * b, &norm, 4);
      for (std::int64_t j = begin; j < begin + n; ++j) {
        std::uint32_t level = 0;
        if (norm > 0.0f) {
          const double scaled = s_ * std::abs(static_cast<double>(v[j])) / norm;
          level = static_cast<std::uint32_t>(scaled);
          if (rng.uniform() < scaled - level) ++level;
          level = std::min<std::uint32_t>(level, static_cast<std::uint32_t>(s_));
        }
        const std::uint32_t code = (v[j] < 0.0f ? 1u : 0u) | (level << 1);
        for (int k = 0; k < bits; ++k, ++bit)
          if (code >> k & 1u) packed[bit / 8] |= static_cast<std::uint8_t>(1u << (bit % 8));
      }
    }
    return out;
  }
  Vector decode(const Payload& p, std::int64_t d) override {
    const std::int64_t buckets = (d + bucket_ - 1) / bucket_;
    const int bits = 1 + level_bits_;
    if (p.size() != static_cast<std::size_t>(4 * buckets + (d * bits + 7) / 8))
      ByteReader(p, "qsgd").fail("size does not match the model and the levels/bucket settings");
    const std::uint8_t* packed = p.data() + 4 * buckets;
    Vector out(d);
    std::int64_t bit = 0;
    for (std::int64_t b = 0; b < buckets; ++b) {
      float norm;
      std::memcpy(&norm, p.data() + 4 * b, 4);
      const std::int64_t begin = b * bucket_, n = std::min<std::int64_t>(bucket_, d - begin);
      for (std::int64_t j = begin; j < begin + n; ++j) {
        std::uint32_t code = 0;
        for (int k = 0; k < bits; ++k, ++bit) code |= static_cast<std::uint32_t>(packed[bit / 8] >> (bit % 8) & 1u) << k;
        const float magnitude = norm * static_cast<float>(code >> 1) / static_cast<float>(s_);
        out[j] = code & 1u ? -magnitude : magnitude;
      }
    }
    return out;
  }
  std::unique_ptr<Compressor> clone() const override { return std::make_unique<Qsgd>(s_, bucket_); }

 private:
  int s_, bucket_, level_bits_;
};

// ---------------------------------------------------------------- scaled sign

// Scaled sign (EF-signSGD): a float32 scale ||v||_1 / d, then one bit per coordinate (1 = negative).
// Plain sign (signSGD, `scaled: false`): the bits alone, decoded as +-1; pair it with the
// majority_vote aggregator for signSGD with majority vote.
class Sign final : public Compressor {
 public:
  explicit Sign(bool scaled) : scaled_(scaled) {}
  Payload encode(const Vector& v, Rng&) override {
    require_finite(v, "sign");
    const std::int64_t d = v.size();
    const std::size_t head = scaled_ ? 4 : 0;
    Payload out(head + static_cast<std::size_t>((d + 7) / 8), 0);
    if (scaled_) {
      const float scale = d > 0 ? v.cwiseAbs().sum() / static_cast<float>(d) : 0.0f;
      std::memcpy(out.data(), &scale, 4);
    }
    for (std::int64_t j = 0; j < d; ++j)
      if (v[j] < 0.0f) out[head + j / 8] |= static_cast<std::uint8_t>(1u << (j % 8));
    return out;
  }
  Vector decode(const Payload& p, std::int64_t d) override {
    const std::size_t head = scaled_ ? 4 : 0;
    if (p.size() != head + static_cast<std::size_t>((d + 7) / 8)) ByteReader(p, "sign").fail("size does not match the model");
    float scale = 1.0f;
    if (scaled_) std::memcpy(&scale, p.data(), 4);
    Vector out(d);
    for (std::int64_t j = 0; j < d; ++j) out[j] = p[head + j / 8] >> (j % 8) & 1u ? -scale : scale;
    return out;
  }
  std::unique_ptr<Compressor> clone() const override { return std::make_unique<Sign>(scaled_); }

 private:
  bool scaled_;
};

}  // namespace

void register_operators(CompressorRegistry& r) {
  r.add("fp16", "IEEE half precision, 2 bytes per coordinate",
        [](Section&, std::span<const TensorShape>) { return std::make_unique<Cast16<float_to_half, half_to_float>>("fp16"); });
  r.add("bf16", "bfloat16 (the upper half of float32, rounded), 2 bytes per coordinate",
        [](Section&, std::span<const TensorShape>) { return std::make_unique<Cast16<float_to_bf16, bf16_to_float>>("bf16"); });
  r.add("topk", "the k largest magnitudes (ratio or k), values + the smallest index coding", [](Section& s, std::span<const TensorShape>) {
    const double ratio = s.get_double("ratio", 0.01, 0.0, 1.0, true);
    return std::make_unique<TopK>(ratio, s.get_int("k", 0, 0));
  });
  r.add("randk", "k random coordinates from a seed that travels instead of indices", [](Section& s, std::span<const TensorShape>) {
    const double ratio = s.get_double("ratio", 0.01, 0.0, 1.0, true);
    const auto k = s.get_int("k", 0, 0);
    return std::make_unique<RandK>(ratio, k, s.get<bool>("unbiased", true));
  });
  r.add("qsgd", "stochastic quantisation to s levels per bucket norm, packed bits", [](Section& s, std::span<const TensorShape>) {
    const int levels = static_cast<int>(s.get_int("levels", 7, 1, 1 << 20));
    return std::make_unique<Qsgd>(levels, static_cast<int>(s.get_int("bucket", 512, 1, 1 << 30)));
  });
  r.add("sign", "one sign bit per coordinate, scaled by ||v||_1 / d (scaled: false for plain +-1)",
        [](Section& s, std::span<const TensorShape>) { return std::make_unique<Sign>(s.get<bool>("scaled", true)); });
}

}  // namespace starling
