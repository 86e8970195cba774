// Helpers shared by the test programs: temporary folders, child processes, an in-memory sink.
#pragma once
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/metric_sink.h"
#include "core/section.h"

extern char** environ;

namespace starling::test {

// Builds something from `yaml` read as one config section (make(Section&)), then rejects any key
// the maker did not read, as the real config loader does.
template <typename Make>
auto from_section(const std::string& yaml, Make make) {
  YAML::Node doc = YAML::Load("{section: " + yaml + "}");
  Section root(doc);
  Section section = root.child("section");
  auto made = make(section);
  root.reject_unknown_keys();
  return made;
}


// A fresh folder under the system temp dir, removed with everything in it at scope exit.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "starling-test-XXXXXX").string();
    if (!mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed: " + std::string(std::strerror(errno)));
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  // Writes `text` to `name` in this folder and returns its path.
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream out(file(name), std::ios::binary);
    out << text;
    if (!out) throw std::runtime_error("cannot write " + file(name));
    return file(name);
  }

 private:
  std::filesystem::path path_;
};

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Starts `args` (args[0] is the program path) with stdout and stderr sent to files.
inline pid_t spawn(const std::vector<std::string>& args, const std::string& out_path, const std::string& err_path) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw std::runtime_error("posix_spawn " + args[0] + ": " + std::strerror(rc));
  return pid;
}

struct ProcessResult {
  int exit_code = -1;    // valid when the process exited normally
  int term_signal = 0;   // the signal that ended it, or 0
  std::string out, err;  // its standard output and error
};

inline ProcessResult wait_for(pid_t pid, const std::string& out_path, const std::string& err_path) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  ProcessResult r;
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.term_signal = WTERMSIG(status);
  r.out = read_text(out_path);
  r.err = read_text(err_path);
  return r;
}

// Runs `args` to completion; its output files go into `dir`.
inline ProcessResult run_process(const std::vector<std::string>& args, const TempDir& dir) {
  static int counter = 0;
  const std::string tag = std::to_string(counter++);
  const auto out = dir.file("stdout" + tag + ".txt"), err = dir.file("stderr" + tag + ".txt");
  return wait_for(spawn(args, out, err), out, err);
}

// Kills a child process at scope exit unless it was already reaped (so a failed assertion
// never leaves a 100000-round simulation running).
class ChildGuard {
 public:
  explicit ChildGuard(pid_t pid) : pid_(pid) {}
  ~ChildGuard() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      int status;
      waitpid(pid_, &status, 0);
    }
  }
  void release() { pid_ = -1; }
  ChildGuard(const ChildGuard&) = delete;
  ChildGuard& operator=(const ChildGuard&) = delete;

 private:
  pid_t pid_;
};

// Collects everything a run reports, in order.
class MemorySink final : public MetricSink {
 public:
  struct Metric {
    int round;
    SimTime time;
    NodeId node;
    std::string name;
    double value;
  };
  struct Traffic {
    int round;
    NodeId src, dst;
    std::int64_t bytes, messages;
    bool operator==(const Traffic&) const = default;
  };
  void metric(int round, SimTime time, NodeId node, std::string_view name, double value) override {
    metrics.push_back({round, time, node, std::string(name), value});
  }
  void traffic(int round, NodeId src, NodeId dst, std::int64_t bytes, std::int64_t messages) override {
    traffic_rows.push_back({round, src, dst, bytes, messages});
  }
  void end_round(int round) override { ended.push_back(round); }

  // The last value of global metric `name`, or NaN.
  double last(const std::string& name) const {
    for (auto it = metrics.rbegin(); it != metrics.rend(); ++it)
      if (it->node == kNoNode && it->name == name) return it->value;
    return std::nan("");
  }

  std::vector<Metric> metrics;
  std::vector<Traffic> traffic_rows;
  std::vector<int> ended;
};

}  // namespace starling::test
