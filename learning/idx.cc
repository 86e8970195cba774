#include "learning/idx.h"

#include <zlib.h>

#include <memory>

#include "core/error.h"

namespace starling {

namespace {
struct GzCloser {
  void operator()(gzFile f) const { gzclose(f); }
};
}  // namespace

IdxArray read_idx(const std::string& path) {
  // gzread reads plain files transparently, so one path serves .gz and uncompressed files.
  std::unique_ptr<gzFile_s, GzCloser> file(gzopen(path.c_str(), "rb"));
  if (!file)
    throw DataError(path + ": cannot open; install the Debian package dataset-fashion-mnist "
                    "or point data.path at a folder with the IDX files");
  auto read_exact = [&](void* buf, unsigned n, const char* what) {
    const int got = gzread(file.get(), buf, n);
    if (got != static_cast<int>(n))
      throw DataError(path + ": truncated or corrupt IDX file while reading the " + what +
                      "; re-install or re-download it");
  };
  unsigned char header[4];
  read_exact(header, 4, "header");
  if (header[0] != 0 || header[1] != 0)
    throw DataError(path + ": not an IDX file (bad magic number)");
  if (header[2] != 0x08)
    throw DataError(path + ": IDX element type " + std::to_string(header[2]) + " is not supported; only unsigned bytes (8)");
  const int ndim = header[3];
  if (ndim < 1 || ndim > 4) throw DataError(path + ": IDX file has " + std::to_string(ndim) + " dimensions; expected 1 to 4");
  IdxArray out;
  std::uint64_t total = 1;
  for (int i = 0; i < ndim; ++i) {
    unsigned char b[4];
    read_exact(b, 4, "dimensions");
    const std::uint32_t d = (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) | b[3];
    out.dims.push_back(d);
    total *= d;
  }
  if (total > (std::uint64_t{1} << 32)) throw DataError(path + ": IDX dimensions are implausibly large");
  out.data.resize(total);
  std::uint64_t done = 0;
  while (done < total) {
    const unsigned chunk = static_cast<unsigned>(std::min<std::uint64_t>(total - done, 1u << 30));
    read_exact(out.data.data() + done, chunk, "data");
    done += chunk;
  }
  unsigned char extra;
  if (gzread(file.get(), &extra, 1) != 0) throw DataError(path + ": trailing bytes after the IDX data; the file is corrupt");
  return out;
}

}  // namespace starling
