#include "apps/progress.h"

#include <unistd.h>

#include <string>

namespace starling {

Progress::Progress(int total_rounds, Mode mode, std::FILE* out)
    : total_(total_rounds), mode_(mode), out_(out), start_(std::chrono::steady_clock::now()) {}

Progress::Mode Progress::mode_for(bool quiet, std::FILE* out) {
  if (quiet) return Mode::kQuiet;
  return isatty(fileno(out)) ? Mode::kBar : Mode::kLines;
}

void Progress::metric(int, SimTime time, NodeId node, std::string_view name, double value) {
  sim_seconds_ = to_seconds(time);
  if (node == kNoNode && name == "test_accuracy") accuracy_ = value, evaluated_this_round_ = true;
}

void Progress::end_round(int round) {
  if (mode_ == Mode::kQuiet) return;
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double eta = round > 0 ? elapsed / round * (total_ - round) : 0.0;
  const std::string acc = accuracy_ ? std::to_string(*accuracy_).substr(0, 6) : "-";
  if (mode_ == Mode::kBar) {
    constexpr int kWidth = 30;
    const int filled = total_ > 0 ? kWidth * round / total_ : kWidth;
    std::string bar(static_cast<std::size_t>(filled), '#');
    bar.resize(kWidth, '.');
    std::fprintf(out_, "\r[%s] round %d/%d  test_accuracy %s  sim %.1fs  elapsed %.1fs  ETA %.0fs ", bar.c_str(), round,
                 total_, acc.c_str(), sim_seconds_, elapsed, eta);
    std::fflush(out_);
    drew_ = true;
  } else if (evaluated_this_round_ || round == total_) {
    std::fprintf(out_, "round %d/%d test_accuracy=%s sim_time=%.2fs elapsed=%.1fs\n", round, total_, acc.c_str(),
                 sim_seconds_, elapsed);
    std::fflush(out_);
  }
  evaluated_this_round_ = false;
}

void Progress::finish() {
  if (drew_) std::fputc('\n', out_);
  drew_ = false;
}

}  // namespace starling
