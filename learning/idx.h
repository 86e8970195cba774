// IDX files (the MNIST family's format), plain or gzip-compressed.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace starling {

struct IdxArray {
  std::vector<std::uint32_t> dims;
  std::vector<std::uint8_t> data;  // unsigned bytes (type code 0x08), row-major
};

// Reads `path`; throws DataError naming the file and what is wrong with it.
IdxArray read_idx(const std::string& path);

}  // namespace starling
