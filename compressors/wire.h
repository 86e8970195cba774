// Little-endian byte writing and bounds-checked reading for compressor encodings.
#pragma once
#include <cstdint>
#include <cstring>
#include <span>
#include <string>

#include "compressors/compressor.h"
#include "core/error.h"

namespace starling {

class ByteWriter {
 public:
  explicit ByteWriter(Payload& out) : out_(out) {}
  template <typename T>
  void put(T value) {  // fixed-width little-endian (the static_assert in compressor.cc checks the host)
    const auto at = out_.size();
    out_.resize(at + sizeof(T));
    std::memcpy(out_.data() + at, &value, sizeof(T));
  }
  void put_floats(const float* values, std::size_t n) {
    const auto at = out_.size();
    out_.resize(at + n * sizeof(float));
    if (n) std::memcpy(out_.data() + at, values, n * sizeof(float));
  }
  void put_varint(std::uint64_t value) {  // LEB128
    do {
      std::uint8_t byte = value & 0x7f;
      value >>= 7;
      out_.push_back(static_cast<std::uint8_t>(byte | (value ? 0x80 : 0)));
    } while (value);
  }
  Payload& bytes() { return out_; }

 private:
  Payload& out_;
};

class ByteReader {
 public:
  ByteReader(const Payload& in, const char* what) : in_(in), what_(what) {}
  template <typename T>
  T get() {
    need(sizeof(T));
    T value;
    std::memcpy(&value, in_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return value;
  }
  void get_floats(float* out, std::size_t n) {
    need(n * sizeof(float));
    if (n) std::memcpy(out, in_.data() + pos_, n * sizeof(float));
    pos_ += n * sizeof(float);
  }
  std::uint64_t get_varint() {
    std::uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      const auto byte = get<std::uint8_t>();
      value |= static_cast<std::uint64_t>(byte & 0x7f) << shift;
      if (!(byte & 0x80)) return value;
    }
    fail("overlong varint");
  }
  // The unread bytes, for decoders that walk them directly; skip() past what they used.
  std::span<const std::uint8_t> rest() const { return {in_.data() + pos_, in_.size() - pos_}; }
  void skip(std::size_t n) {
    need(n);
    pos_ += n;
  }
  const std::uint8_t* take(std::size_t n) {
    need(n);
    const auto* p = in_.data() + pos_;
    pos_ += n;
    return p;
  }
  void expect_end() const {
    if (pos_ != in_.size()) fail(std::to_string(in_.size() - pos_) + " trailing bytes");
  }
  [[noreturn]] void fail(const std::string& why) const { throw Error(std::string("malformed ") + what_ + " payload: " + why); }

 private:
  void need(std::size_t n) const {
    if (pos_ + n > in_.size()) fail("truncated");
  }
  const Payload& in_;
  const char* what_;
  std::size_t pos_ = 0;
};

}  // namespace starling
