// The compression operators (card 7). Each encoding is exact bytes; sizes are documented in
// README "Compressors" and checked by the conformance tests.
#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <functional>
#include <utility>

#ifdef __AVX2__
#include <immintrin.h>
#endif
#ifdef __linux__
#include <sys/mman.h>
#endif

#include "compressors/compressor.h"
#include "compressors/operators.h"
#include "compressors/wire.h"

namespace starling {

namespace {

// ---------------------------------------------------------------- shared helpers

// |x| as float bits: for finite floats their order is the order of magnitudes (and -0 == +0).
std::uint32_t magnitude_bits(float x) { return std::bit_cast<std::uint32_t>(x) & 0x7fffffffu; }
constexpr std::uint32_t kInfinityBits = 0x7f800000u;  // NaNs lie above

[[noreturn]] void refuse_non_finite(const char* who) {
  throw Error(std::string(who) + " compressor: the vector holds NaN or infinite values");
}

// Bit t set iff x[t] < 0, resp. iff |x[t]| >= the float whose bits are `threshold`, for t < n <= 64.
// With AVX2 a compare and a movemask per 8 floats; the portable loops do not vectorise as well.
std::uint64_t negative_mask(const float* x, std::int64_t n) {
  std::uint64_t mask = 0;
  std::int64_t t = 0;
#ifdef __AVX2__
  for (; t + 8 <= n; t += 8) {
    const __m256 lanes = _mm256_loadu_ps(x + t);
    mask |= std::uint64_t(unsigned(_mm256_movemask_ps(_mm256_cmp_ps(lanes, _mm256_setzero_ps(), _CMP_LT_OQ)))) << t;
  }
#endif
  for (; t < n; ++t) mask |= std::uint64_t{x[t] < 0.0f} << t;
  return mask;
}

std::uint64_t at_least_mask(const float* x, std::int64_t n, std::uint32_t threshold) {
  std::uint64_t mask = 0;
  std::int64_t t = 0;
#ifdef __AVX2__
  // Magnitude bits are below 2^31, so the signed compare is the unsigned one: m > threshold - 1.
  const __m256i below = _mm256_set1_epi32(static_cast<int>(threshold) - 1), abs = _mm256_set1_epi32(0x7fffffff);
  for (; threshold > 0 && t + 8 <= n; t += 8) {
    const __m256i m = _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + t)), abs);
    mask |= std::uint64_t(unsigned(_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(m, below))))) << t;
  }
#endif
  for (; t < n; ++t) mask |= std::uint64_t{magnitude_bits(x[t]) >= threshold} << t;
  return mask;
}

// The largest magnitude bits of x[0..n): >= kInfinityBits iff some x is NaN or infinite.
std::uint32_t largest_magnitude(const float* x, std::int64_t n) {
  std::uint32_t largest = 0;
  for (std::int64_t t = 0; t < n; ++t) largest = std::max(largest, magnitude_bits(x[t]));  // vectorises
  return largest;
}

// Large outputs ask Linux for transparent huge pages before they are first touched: a fresh
// 40 MB buffer otherwise costs 10^4 page faults, which take longer than decoding into it.
void advise_huge_pages([[maybe_unused]] void* data, [[maybe_unused]] std::size_t bytes) {
#ifdef __linux__
  constexpr std::uintptr_t kHuge = std::uintptr_t{1} << 21;
  const auto begin = (reinterpret_cast<std::uintptr_t>(data) + kHuge - 1) & ~(kHuge - 1);
  const auto end = (reinterpret_cast<std::uintptr_t>(data) + bytes) & ~(kHuge - 1);
  if (end >= begin + 2 * kHuge) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#endif
}

Vector fresh_vector(std::int64_t d) {  // uninitialised
  Vector v(d);
  advise_huge_pages(v.data(), static_cast<std::size_t>(d) * sizeof(float));
  return v;
}

Payload fresh_payload(std::size_t bytes) {  // zero-filled
  Payload p;
  p.reserve(bytes);
  advise_huge_pages(p.data(), bytes);
  p.resize(bytes);
  return p;
}

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
  const auto rounded = static_cast<std::uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
  return (x & 0x7fffffffu) > 0x7f800000u ? static_cast<std::uint16_t>((x >> 16) | 0x40u) : rounded;  // keep NaN a NaN
}

float bf16_to_float(std::uint16_t b) { return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16); }

template <std::uint16_t (*Encode)(float), float (*Decode)(std::uint16_t)>
class Cast16 final : public Compressor {
 public:
  explicit Cast16(const char* name) : name_(name) {}
  // Blocks through a small aligned buffer so the per-coordinate loops vectorise; the finiteness
  // check rides along instead of taking its own pass.
  Payload encode(const Vector& v, Rng&) override {
    const std::int64_t d = v.size();
    Payload out = fresh_payload(static_cast<std::size_t>(d) * 2);
    std::uint32_t largest = 0;
    std::uint16_t block[kBlock];
    for (std::int64_t at = 0; at < d; at += kBlock) {
      const std::int64_t n = std::min(kBlock, d - at);
      for (std::int64_t t = 0; t < n; ++t) block[t] = Encode(v[at + t]);
      largest = std::max(largest, largest_magnitude(v.data() + at, n));
      std::memcpy(out.data() + 2 * at, block, static_cast<std::size_t>(n) * 2);
    }
    if (largest >= kInfinityBits) refuse_non_finite(name_);
    return out;
  }
  void decode_into(const Payload& p, std::int64_t dim, Vector& out) override {
    if (p.size() != static_cast<std::size_t>(dim) * 2) ByteReader(p, name_).fail("size does not match the model");
    if (out.size() != dim) out = fresh_vector(dim);  // reuse the receiver's buffer
    std::uint16_t block[kBlock];
    for (std::int64_t at = 0; at < dim; at += kBlock) {
      const std::int64_t n = std::min(kBlock, dim - at);
      std::memcpy(block, p.data() + 2 * at, static_cast<std::size_t>(n) * 2);
      for (std::int64_t t = 0; t < n; ++t) out[at + t] = Decode(block[t]);
    }
  }
  std::optional<double> unbiased_variance(std::int64_t) const override { return 0.0; }
  std::unique_ptr<Compressor> clone() const override { return std::make_unique<Cast16>(name_); }

 private:
  static constexpr std::int64_t kBlock = 1024;
  const char* name_;
};

// ---------------------------------------------------------------- sparse index coding

std::size_t varint_size(std::uint64_t v) { return static_cast<std::size_t>(std::bit_width(v | 1) + 6) / 7; }

// Writes sorted `indices` of a d-vector in the smallest of three codings (tag byte first):
// 0 = 32-bit indices, 1 = delta varints, 2 = a bitmap of d bits.
void put_indices(ByteWriter& w, std::span<const std::uint32_t> indices, std::int64_t d) {
  const std::size_t raw = 4 * indices.size(), bitmap = static_cast<std::size_t>((d + 7) / 8);
  std::size_t varints = 0;
  std::uint32_t previous = 0;
  for (auto i : indices) varints += varint_size(i - previous), previous = i;
  const std::size_t best = std::min({raw, varints, bitmap});
  Payload& bytes = w.bytes();
  const std::size_t at = bytes.size();
  bytes.resize(at + 1 + best);  // zero-filled: the bitmap ORs into it
  std::uint8_t* out = bytes.data() + at;
  if (best == raw) {
    *out++ = 0;
    if (raw > 0) std::memcpy(out, indices.data(), raw);  // little-endian host (compressor.cc asserts it); empty span: null data
  } else if (best == varints) {
    *out++ = 1;
    previous = 0;
    for (auto i : indices) {  // LEB128, as ByteWriter::put_varint
      std::uint32_t delta = i - previous;
      previous = i;
      for (; delta >= 0x80; delta >>= 7) *out++ = static_cast<std::uint8_t>(delta | 0x80);
      *out++ = static_cast<std::uint8_t>(delta);
    }
  } else {
    *out++ = 2;
    for (auto i : indices) out[i / 8] |= static_cast<std::uint8_t>(1u << (i % 8));
  }
}

// Reads what put_indices wrote, calling visit(j, index) for the j-th index in increasing order.
// Throws unless there are exactly k indices, each < d and larger than the one before.
template <typename Visit>
void get_indices(ByteReader& r, std::size_t k, std::int64_t d, Visit&& visit) {
  const auto tag = r.get<std::uint8_t>();
  std::int64_t previous = -1;
  const auto accept = [&](std::size_t j, std::int64_t index) {
    if (index >= d || index <= previous) r.fail("indices out of range or not increasing");
    visit(j, static_cast<std::uint32_t>(previous = index));
  };
  if (tag == 0) {
    const std::uint8_t* in = r.take(4 * k);
    for (std::size_t j = 0; j < k; ++j) {
      std::uint32_t index;
      std::memcpy(&index, in + 4 * j, 4);
      accept(j, index);
    }
  } else if (tag == 1) {
    const auto bytes = r.rest();
    std::size_t at = 0;
    std::uint64_t index = 0;
    for (std::size_t j = 0; j < k; ++j) {
      std::uint64_t delta = 0;
      for (int shift = 0;; shift += 7) {
        if (at == bytes.size()) r.fail("truncated");
        if (shift > 28) r.fail("overlong varint");  // deltas are 32-bit: at most 5 bytes
        const std::uint8_t byte = bytes[at++];
        delta |= static_cast<std::uint64_t>(byte & 0x7f) << shift;
        if (!(byte & 0x80)) break;
      }
      index += delta;
      accept(j, index > static_cast<std::uint64_t>(d) ? d : static_cast<std::int64_t>(index));
    }
    r.skip(at);
  } else if (tag == 2) {
    const std::size_t bytes = static_cast<std::size_t>((d + 7) / 8);
    const std::uint8_t* bits = r.take(bytes);
    std::size_t j = 0;
    for (std::size_t at = 0; at < bytes; at += 8) {  // 64 bits at a time; set bits by countr_zero
      std::uint64_t word = 0;
      std::memcpy(&word, bits + at, std::min<std::size_t>(8, bytes - at));
      for (; word; word &= word - 1) {
        if (j == k) r.fail("bitmap holds more indices than the header says");
        accept(j++, static_cast<std::int64_t>(8 * at) + std::countr_zero(word));
      }
    }
    if (j != k) r.fail("bitmap holds " + std::to_string(j) + " indices, header says " + std::to_string(k));
  } else {
    r.fail("unknown index coding " + std::to_string(tag));
  }
}

std::int64_t count_from(double ratio, std::int64_t k, std::int64_t d) {
  if (k > 0) return std::min(k, d);
  return std::clamp<std::int64_t>(static_cast<std::int64_t>(std::llround(ratio * static_cast<double>(d))), d > 0 ? 1 : 0, d);
}

// ---------------------------------------------------------------- top-k

// Sort key of coordinate j: larger magnitude first, then the lower index (complemented).
std::uint64_t rank_key(std::uint32_t magnitude, std::uint32_t j) { return std::uint64_t{magnitude} << 32 | ~j; }

// Magnitude bits t for which about `expected` coordinates of v, plus a 4-sigma margin times
// `widen`, have |v_j| >= t: an order statistic of a sample of one 16-float run from each of up
// to 1024 strata of at least 512 coordinates (deterministic offsets). 0 once the margin covers
// the whole sample, and for vectors too short to sample (under 2^15 coordinates).
std::uint32_t sampled_threshold(const Vector& v, std::int64_t k, std::int64_t widen) {
  constexpr std::int64_t kRun = 16;
  const std::int64_t d = v.size(), strata = std::min<std::int64_t>(1024, d / 512), kSample = strata * kRun;
  if (strata < 64) return 0;
  const std::int64_t stratum = d / strata;
  std::vector<std::uint32_t> sample(static_cast<std::size_t>(kSample));
  for (std::int64_t s = 0; s < strata; ++s) {
    const auto offset = static_cast<std::int64_t>(mix64(static_cast<std::uint64_t>(s)) % static_cast<std::uint64_t>(stratum - kRun));
    for (std::int64_t t = 0; t < kRun; ++t) sample[s * kRun + t] = magnitude_bits(v[s * stratum + offset + t]);
  }
  const double expected = static_cast<double>(k) * static_cast<double>(kSample) / static_cast<double>(d);
  const auto rank = static_cast<std::int64_t>(widen * (expected + 4.0 * std::sqrt(expected) + 8.0));
  if (rank >= kSample) return 0;
  std::nth_element(sample.begin(), sample.begin() + rank, sample.end(), std::greater<>());
  return sample[rank];
}

// Indices (ascending) and values of the k largest |v_j|, ties to the lower index; refuses NaN/inf.
// Exact without sorting d keys: one pass keeps the candidates with |v_j| >= a sampled threshold
// (in index order), the k-th largest candidate key comes from nth_element over those alone, and
// a second look at the candidates keeps the keys at or above it. Too few candidates (an unlucky
// sample) means a retry with a lower threshold; the last try, threshold 0, keeps every coordinate.
struct Selection {
  std::vector<std::uint32_t> indices;
  std::vector<float> values;
};

Selection top_k(const Vector& v, std::int64_t k) {
  const std::int64_t d = v.size();
  std::vector<std::uint64_t> keys;
  std::vector<float> values;  // kept with the keys: no second, random-access read of v
  for (std::int64_t widen = 1;; widen *= 4) {
    const std::uint32_t threshold = sampled_threshold(v, k, widen);
    keys.clear();
    values.clear();
    for (std::int64_t at = 0; at < d; at += 64) {
      for (std::uint64_t mask = at_least_mask(v.data() + at, std::min<std::int64_t>(64, d - at), threshold); mask; mask &= mask - 1) {
        const std::int64_t j = at + std::countr_zero(mask);
        const std::uint32_t m = magnitude_bits(v[j]);
        if (m >= kInfinityBits) refuse_non_finite("topk");  // the threshold is a value of v: no NaN hides below it
        keys.push_back(rank_key(m, static_cast<std::uint32_t>(j)));
        values.push_back(v[j]);
      }
    }
    if (static_cast<std::int64_t>(keys.size()) >= k) break;
  }
  Selection top;
  if (k == 0) return top;
  std::vector<std::uint64_t> order(keys);
  std::nth_element(order.begin(), order.begin() + (k - 1), order.end(), std::greater<>());
  const std::uint64_t kth = order[static_cast<std::size_t>(k - 1)];
  top.indices.reserve(static_cast<std::size_t>(k));
  top.values.reserve(static_cast<std::size_t>(k));
  for (std::size_t c = 0; c < keys.size(); ++c) {
    if (keys[c] < kth) continue;
    top.indices.push_back(~static_cast<std::uint32_t>(keys[c]));
    top.values.push_back(values[c]);
  }
  return top;
}

// The k largest |v_j| (ties: lower index first), selected exactly (top_k).
// Payload: u32 k, k float32 values (in index order), then the indices (put_indices).
class TopK final : public Compressor {
 public:
  TopK(double ratio, std::int64_t k) : ratio_(ratio), k_(k) {}
  Payload encode(const Vector& v, Rng&) override {
    const std::int64_t d = v.size(), k = count_from(ratio_, k_, d);
    const Selection top = top_k(v, k);
    Payload out;
    ByteWriter w(out);
    w.put<std::uint32_t>(static_cast<std::uint32_t>(k));
    w.put_floats(top.values.data(), top.values.size());
    put_indices(w, top.indices, d);
    return out;
  }
  void decode_into(const Payload& p, std::int64_t d, Vector& out) override {
    ByteReader r(p, "topk");
    const auto k = r.get<std::uint32_t>();
    if (k > d) r.fail("k exceeds the model size");
    const std::uint8_t* values = r.take(4 * static_cast<std::size_t>(k));
    if (out.size() != d) out = fresh_vector(d);  // reuse the receiver's buffer
    std::int64_t filled = 0;  // one sequential sweep: zeros up to each index, then its value
    get_indices(r, k, d, [&](std::size_t j, std::uint32_t i) {
      std::fill(out.data() + filled, out.data() + i, 0.0f);
      std::memcpy(&out[i], values + 4 * j, 4);
      filled = i + 1;
    });
    r.expect_end();
    std::fill(out.data() + filled, out.data() + d, 0.0f);
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
    std::vector<float> values;
    values.reserve(static_cast<std::size_t>(k));
    for (auto i : draw_indices(seed, k, d)) values.push_back(scale * v[i]);
    Payload out;
    ByteWriter w(out);
    w.put<std::uint64_t>(seed);
    w.put<std::uint32_t>(static_cast<std::uint32_t>(k));
    w.put_floats(values.data(), values.size());
    return out;
  }
  void decode_into(const Payload& p, std::int64_t d, Vector& out) override {
    ByteReader r(p, "randk");
    const auto seed = r.get<std::uint64_t>();
    const auto k = r.get<std::uint32_t>();
    if (k > d) r.fail("k exceeds the model size");
    const std::uint8_t* values = r.take(4 * static_cast<std::size_t>(k));
    r.expect_end();
    if (out.size() != d) out = fresh_vector(d);  // reuse the receiver's buffer
    out.setZero();
    const auto idx = draw_indices(seed, k, d);
    for (std::size_t j = 0; j < idx.size(); ++j) std::memcpy(&out[idx[j]], values + 4 * j, 4);
  }
  // Each coordinate is kept with probability k/d and scaled by d/k: variance (d/k - 1) v_i^2.
  std::optional<double> unbiased_variance(std::int64_t d) const override {
    if (!unbiased_ || d <= 0) return unbiased_ ? std::optional<double>(0.0) : std::nullopt;
    return static_cast<double>(d) / static_cast<double>(count_from(ratio_, k_, d)) - 1.0;
  }
  std::unique_ptr<Compressor> clone() const override { return std::make_unique<RandK>(ratio_, k_, unbiased_); }

 private:
  double ratio_;
  std::int64_t k_;
  bool unbiased_;
};

// ---------------------------------------------------------------- fixed-width bit packing

// Codes of Bits bits, LSB-first, 64 at a time: 64 codes fill exactly Bits 64-bit words, and with
// Bits a template argument every shift is a constant (the loops are folds, fully unrolled).
template <int Bits, int T>
void put_code(std::uint64_t* words, std::uint32_t code) {
  constexpr int word = T * Bits / 64, shift = T * Bits % 64;
  words[word] |= std::uint64_t{code} << shift;
  if constexpr (shift + Bits > 64) words[word + 1] |= std::uint64_t{code} >> (64 - shift);
}

template <int Bits, int T>
std::uint32_t get_code(const std::uint64_t* words) {
  constexpr int word = T * Bits / 64, shift = T * Bits % 64;
  std::uint64_t x = words[word] >> shift;
  if constexpr (shift + Bits > 64) x |= words[word + 1] << (64 - shift);
  return static_cast<std::uint32_t>(x & ((std::uint64_t{1} << Bits) - 1));
}

// Widths that divide 8 (QSGD with s = 1, 7, 127) never straddle a byte: plain byte loops, which vectorise.
template <int Bits>
void pack64(const std::uint32_t* codes, std::uint8_t* out) {
  if constexpr (8 % Bits == 0) {
    constexpr int kPerByte = 8 / Bits;
    for (int i = 0; i < 8 * Bits; ++i) {
      std::uint32_t byte = 0;
      for (int t = 0; t < kPerByte; ++t) byte |= codes[kPerByte * i + t] << (t * Bits);
      out[i] = static_cast<std::uint8_t>(byte);
    }
  } else {
    std::uint64_t words[Bits] = {};
    [&]<int... T>(std::integer_sequence<int, T...>) { (put_code<Bits, T>(words, codes[T]), ...); }(std::make_integer_sequence<int, 64>{});
    std::memcpy(out, words, sizeof words);
  }
}

template <int Bits>
void unpack64(const std::uint8_t* in, std::uint32_t* codes) {
  if constexpr (8 % Bits == 0) {
    constexpr int kPerByte = 8 / Bits;
    for (int i = 0; i < 8 * Bits; ++i)
      for (int t = 0; t < kPerByte; ++t) codes[kPerByte * i + t] = (in[i] >> (t * Bits)) & ((1u << Bits) - 1);
  } else {
    std::uint64_t words[Bits];
    std::memcpy(words, in, sizeof words);
    [&]<int... T>(std::integer_sequence<int, T...>) { ((codes[T] = get_code<Bits, T>(words)), ...); }(std::make_integer_sequence<int, 64>{});
  }
}

// Bits 1..22 (QSGD: a sign bit and up to 21 level bits for s <= 2^20).
constexpr int kMaxBits = 22;
struct BitCodec {
  void (*pack)(const std::uint32_t*, std::uint8_t*);
  void (*unpack)(const std::uint8_t*, std::uint32_t*);
};
const BitCodec& bit_codec(int bits) {
  static const auto table = []<int... B>(std::integer_sequence<int, B...>) {
    return std::array<BitCodec, sizeof...(B)>{BitCodec{&pack64<B + 1>, &unpack64<B + 1>}...};
  }(std::make_integer_sequence<int, kMaxBits>{});
  return table.at(static_cast<std::size_t>(bits - 1));
}

// A packed stream of `count` codes of `bits` bits: ceil(count * bits / 8) bytes. Whole blocks of
// 64 codes go straight to the stream; the last, partial one goes through a zero-padded buffer.
class PackedCodes {
 public:
  PackedCodes(int bits, std::int64_t count) : bits_(bits), count_(count), codec_(bit_codec(bits)) {}
  std::int64_t bytes() const { return (count_ * bits_ + 7) / 8; }
  void pack_block(std::int64_t block, const std::uint32_t* codes, std::uint8_t* stream) const {
    std::uint8_t* at = stream + block * 8 * bits_;
    if (64 * (block + 1) <= count_) return codec_.pack(codes, at);
    std::uint8_t padded[8 * kMaxBits];
    codec_.pack(codes, padded);
    std::memcpy(at, padded, static_cast<std::size_t>(bytes() - block * 8 * bits_));
  }
  void unpack_block(std::int64_t block, const std::uint8_t* stream, std::uint32_t* codes) const {
    const std::uint8_t* at = stream + block * 8 * bits_;
    if (64 * (block + 1) <= count_) return codec_.unpack(at, codes);
    std::uint8_t padded[8 * kMaxBits] = {};
    std::memcpy(padded, at, static_cast<std::size_t>(bytes() - block * 8 * bits_));
    codec_.unpack(padded, codes);
  }

 private:
  int bits_;
  std::int64_t count_;
  const BitCodec& codec_;
};

// ---------------------------------------------------------------- QSGD

// Splits [0, d) into the pieces of each bucket that lie within one aligned window of 2^12
// coordinates: small enough for the codes to stay in L1, and the high half of a coordinate's
// index is the same across a piece. Calls piece(bucket, begin, end).
template <typename Piece>
void for_each_piece(std::int64_t d, std::int64_t bucket, Piece&& piece) {
  constexpr std::int64_t kWindow = 1 << 12;
  for (std::int64_t b = 0; b * bucket < d; ++b) {
    const std::int64_t end = std::min(d, (b + 1) * bucket);
    for (std::int64_t j = b * bucket; j < end;) {
      const std::int64_t next = std::min(end, (j / kWindow + 1) * kWindow);
      piece(b, j, next);
      j = next;
    }
  }
}

// Per bucket of b coordinates: its L2 norm (float32), then for each coordinate a sign bit and a
// level in 0..s (ceil(log2(s + 1)) bits), stochastically rounded so that E[Q(v)] = v; all the
// bits packed LSB-first after the norms. Bytes: 4 * ceil(d / b) + ceil(d * (1 + ceil(log2(s+1))) / 8).
//
// The rounding uniforms are counter-based: one u64 seed per encode from the node's Rng, and
// coordinate j draws u_j = hash(seed, j) (a 32-bit integer hash of the low half of j plus the
// low half of the seed, xor the high halves of both), 24 bits, as a float in [0, 1). For a uniformly
// random seed each u_j is uniform on that grid, so P(round up) = frac to within 2^-24 and the
// rounding is unbiased; it is a pure function of (seed, j), so the bytes do not depend on the
// order or thread the coordinates are visited in, and the loop vectorises.
class Qsgd final : public Compressor {
 public:
  Qsgd(int levels, int bucket) : s_(levels), bucket_(bucket), bits_(1 + std::bit_width(static_cast<unsigned>(levels))) {}
  Payload encode(const Vector& v, Rng& rng) override {
    const std::int64_t d = v.size(), buckets = (d + bucket_ - 1) / bucket_;
    const PackedCodes packed(bits_, d);
    Payload out = fresh_payload(static_cast<std::size_t>(4 * buckets + packed.bytes()));
    std::uint8_t* stream = out.data() + 4 * buckets;
    const std::uint64_t seed = rng.next_u64();
    // Codes wait here until a whole block of 64 is ready: pieces need not end on a block boundary.
    std::uint32_t codes[kWindowCodes + 64];
    std::int64_t pending = 0, next_block = 0;
    float norm = 0.0f;
    for_each_piece(d, bucket_, [&](std::int64_t b, std::int64_t begin, std::int64_t end) {
      if (begin == b * bucket_) {
        const auto bucket = v.segment(begin, std::min<std::int64_t>(bucket_, d - begin));
        norm = bucket.norm();  // inf or NaN if the bucket holds them, or if squares overflow
        if (!std::isfinite(norm) && !bucket.allFinite()) refuse_non_finite("qsgd");
        std::memcpy(out.data() + 4 * b, &norm, 4);
        // Ask for the next bucket now so that its loads overlap this bucket's (compute-bound) rounding.
        const std::int64_t ahead = std::min({d, begin + 2 * bucket.size(), begin + bucket.size() + kWindowCodes});
        for (std::int64_t j = begin + bucket.size(); j < ahead; j += 16) __builtin_prefetch(v.data() + j);
      }
      quantize(v.data() + begin, end - begin, static_cast<std::uint64_t>(begin), seed, norm, codes + pending);
      pending += end - begin;
      std::int64_t used = 0;
      for (; pending - used >= 64; used += 64) packed.pack_block(next_block++, codes + used, stream);
      std::copy(codes + used, codes + pending, codes);
      pending -= used;
    });
    if (pending > 0) {
      std::fill(codes + pending, codes + 64, 0u);
      packed.pack_block(next_block, codes, stream);
    }
    return out;
  }
  void decode_into(const Payload& p, std::int64_t d, Vector& out) override {
    const std::int64_t buckets = (d + bucket_ - 1) / bucket_;
    const PackedCodes packed(bits_, d);
    if (p.size() != static_cast<std::size_t>(4 * buckets + packed.bytes()))
      ByteReader(p, "qsgd").fail("size does not match the model and the levels/bucket settings");
    const std::uint8_t* stream = p.data() + 4 * buckets;
    if (out.size() != d) out = fresh_vector(d);  // reuse the receiver's buffer
    // The blocks covering a piece are unpacked here; a piece starts at `begin % 64` into them.
    std::uint32_t codes[kWindowCodes + 128];
    for_each_piece(d, bucket_, [&](std::int64_t b, std::int64_t begin, std::int64_t end) {
      float norm;
      std::memcpy(&norm, p.data() + 4 * b, 4);
      const std::int64_t first = begin / 64, last = (end + 63) / 64;
      for (std::int64_t block = first; block < last; ++block) packed.unpack_block(block, stream, codes + 64 * (block - first));
      const std::uint32_t* c = codes + (begin - 64 * first);
      const float step = norm / static_cast<float>(s_);
      for (std::int64_t j = 0; j < end - begin; ++j) {
        const float magnitude = step * static_cast<float>(static_cast<std::int32_t>(c[j] >> 1));
        out[begin + j] = c[j] & 1u ? -magnitude : magnitude;
      }
    });
  }
  // Alistarh et al. 2017, Lemma 3.1, per bucket of n coordinates: omega = min(n / s^2, sqrt(n) / s).
  std::optional<double> unbiased_variance(std::int64_t d) const override {
    const double n = static_cast<double>(std::min<std::int64_t>(bucket_, std::max<std::int64_t>(d, 1))), s = s_;
    return std::min(n / (s * s), std::sqrt(n) / s);
  }
  std::unique_ptr<Compressor> clone() const override { return std::make_unique<Qsgd>(s_, bucket_); }

 private:
  static constexpr std::int64_t kWindowCodes = 1 << 12;

  static std::uint32_t hash32(std::uint32_t x) {  // "lowbias32" (C. Wellons): a well-mixing bijection
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
  }

  // Codes of x[0..n), coordinates first.. of a bucket with this norm (see the class comment).
  void quantize(const float* x, std::int64_t n, std::uint64_t first, std::uint64_t seed, float norm, std::uint32_t* codes) const {
    const auto low = static_cast<std::uint32_t>(first) + static_cast<std::uint32_t>(seed);
    const auto high = (static_cast<std::uint32_t>(seed >> 32) ^ static_cast<std::uint32_t>(first >> 32)) * 0x9e3779b9u;
    const float s = static_cast<float>(s_);
    if (!(norm > 0.0f)) {  // a zero bucket: level 0, sign bits only
      for (std::int64_t i = 0; i < n; ++i) codes[i] = x[i] < 0.0f ? 1u : 0u;
      return;
    }
    const auto round = [&](auto to_levels) {
      for (std::uint32_t i = 0; i < static_cast<std::uint32_t>(n); ++i) {
        const float scaled = std::min(to_levels(std::abs(x[i])), s);  // |x_i| <= norm, up to rounding
        const auto floor = static_cast<std::int32_t>(scaled);
        const std::uint32_t u = hash32((low + i) ^ high) >> 8;
        const bool up = static_cast<float>(static_cast<std::int32_t>(u)) * 0x1.0p-24f < scaled - static_cast<float>(floor);
        codes[i] = (x[i] < 0.0f ? 1u : 0u) | static_cast<std::uint32_t>(floor + up) << 1;
      }
    };
    // A multiply instead of a divide per coordinate, unless s / norm overflows (norm < s / FLT_MAX).
    if (const float inverse = s / norm; std::isfinite(inverse)) {
      round([inverse](float a) { return a * inverse; });
    } else {
      round([norm, s](float a) { return a / norm * s; });
    }
  }

  int s_, bucket_, bits_;
};

// ---------------------------------------------------------------- scaled sign

// Scaled sign (EF-signSGD): a float32 scale ||v||_1 / d, then one bit per coordinate (1 = negative).
// Plain sign (signSGD, `scaled: false`): the bits alone, decoded as +-1; pair it with the
// majority_vote aggregator for signSGD with majority vote.
// 64 coordinates per step: their bits form one word, and the block's |v| sum and largest
// magnitude (the finiteness check) come from the same pass.
class Sign final : public Compressor {
 public:
  explicit Sign(bool scaled) : scaled_(scaled) {}
  Payload encode(const Vector& v, Rng&) override {
    const std::int64_t d = v.size();
    const std::size_t head = scaled_ ? 4 : 0;
    Payload out = fresh_payload(head + static_cast<std::size_t>((d + 7) / 8));
    double l1 = 0.0;
    std::uint32_t largest = 0;
    for (std::int64_t at = 0; at < d; at += 64) {
      const std::int64_t n = std::min<std::int64_t>(64, d - at);
      float lanes[16] = {};  // 16 partial sums: vectorises without reassociating a float sum
      if (n == 64) {
        for (std::int64_t g = 0; g < 64; g += 16)
          for (std::int64_t t = 0; t < 16; ++t) lanes[t] += std::abs(v[at + g + t]);
      } else {
        for (std::int64_t t = 0; t < n; ++t) lanes[0] += std::abs(v[at + t]);
      }
      for (float lane : lanes) l1 += lane;
      largest = std::max(largest, largest_magnitude(v.data() + at, n));
      const std::uint64_t word = negative_mask(v.data() + at, n);
      std::memcpy(out.data() + head + at / 8, &word, static_cast<std::size_t>((n + 7) / 8));
    }
    if (largest >= kInfinityBits) refuse_non_finite("sign");
    if (scaled_) {
      const float scale = d > 0 ? static_cast<float>(l1 / static_cast<double>(d)) : 0.0f;
      std::memcpy(out.data(), &scale, 4);
    }
    return out;
  }
  void decode_into(const Payload& p, std::int64_t d, Vector& out) override {
    const std::size_t head = scaled_ ? 4 : 0;
    if (p.size() != head + static_cast<std::size_t>((d + 7) / 8)) ByteReader(p, "sign").fail("size does not match the model");
    float scale = 1.0f;
    if (scaled_) std::memcpy(&scale, p.data(), 4);
    if (out.size() != d) out = fresh_vector(d);  // reuse the receiver's buffer
    for (std::int64_t at = 0; at < d; at += 64) {
      const std::int64_t n = std::min<std::int64_t>(64, d - at);
      std::uint64_t word = 0;
      std::memcpy(&word, p.data() + head + at / 8, static_cast<std::size_t>((n + 7) / 8));
      for (std::int64_t t = 0; t < n; ++t) out[at + t] = word >> t & 1u ? -scale : scale;
    }
  }
  std::unique_ptr<Compressor> clone() const override { return std::make_unique<Sign>(scaled_); }

 private:
  bool scaled_;
};

}  // namespace

void require_finite(const Vector& v, const char* who) {
  if (largest_magnitude(v.data(), v.size()) >= kInfinityBits) refuse_non_finite(who);
}

void register_operators(CompressorRegistry& r) {
  const CompressorTraits cast{.dense = true, .unbiased = "deterministic rounding only (omega reported 0)", .contractive = true};
  r.add(PluginSpec("fp16", "IEEE half precision, 2 bytes per coordinate").with_traits(cast),
        [](Section&, std::span<const TensorShape>) { return std::make_unique<Cast16<float_to_half, half_to_float>>("fp16"); });
  r.add(PluginSpec("bf16", "bfloat16 (the upper half of float32, rounded), 2 bytes per coordinate").with_traits(cast),
        [](Section&, std::span<const TensorShape>) { return std::make_unique<Cast16<float_to_bf16, bf16_to_float>>("bf16"); });
  r.add(PluginSpec("topk", "the k largest magnitudes (ratio or k), values + the smallest index coding")
            .number("ratio", 0.01, Range::above_until(0, 1), "fraction of coordinates kept")
            .integer("k", 0, Range::at_least(0), "coordinates kept; overrides ratio when > 0")
            .with_traits(CompressorTraits{.contractive = true}),
        [](Section& s, std::span<const TensorShape>) { return std::make_unique<TopK>(s.number("ratio"), s.integer("k")); });
  r.add(PluginSpec("randk", "k random coordinates from a seed that travels instead of indices")
            .number("ratio", 0.01, Range::above_until(0, 1), "fraction of coordinates kept")
            .integer("k", 0, Range::at_least(0), "coordinates kept; overrides ratio when > 0")
            .flag("unbiased", true, "scale the kept coordinates by d/k (unbiased, omega = d/k - 1); false: contractive")
            .with_traits(CompressorTraits{.unbiased = "with unbiased: true; omega = d/k - 1", .contractive = true}),
        [](Section& s, std::span<const TensorShape>) {
          const double ratio = s.number("ratio");
          const auto k = s.integer("k");
          return std::make_unique<RandK>(ratio, k, s.flag("unbiased"));
        });
  r.add(PluginSpec("qsgd", "stochastic quantisation to s levels per bucket norm, packed bits")
            .integer("levels", 7, Range::between(1, 1 << 20), "quantisation levels s per bucket")
            .integer("bucket", 512, Range::between(1, 1 << 30), "coordinates per bucket (one norm each)")
            .with_traits(CompressorTraits{.unbiased = "omega = min(b/s^2, sqrt(b)/s) for bucket b"}),
        [](Section& s, std::span<const TensorShape>) {
          const int levels = s.integer<int>("levels");
          return std::make_unique<Qsgd>(levels, s.integer<int>("bucket"));
        });
  r.add(PluginSpec("sign", "one sign bit per coordinate, scaled by ||v||_1 / d (scaled: false for plain +-1)")
            .flag("scaled", true, "scale the signs by ||v||_1 / d (contractive); false sends plain +-1")
            .with_traits(CompressorTraits{.contractive = true}),
        [](Section& s, std::span<const TensorShape>) { return std::make_unique<Sign>(s.flag("scaled")); });
}

}  // namespace starling
