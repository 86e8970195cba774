// Error types. Bad input is reported by exceptions carrying enough context to fix it:
// ConfigError names the config key path, the offending value and what is allowed.
#pragma once
#include <stdexcept>
#include <string>

namespace starling {

// Base of all errors Starling reports to the user.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A bad configuration value or key. what() reads "KEY: MESSAGE".
class ConfigError : public Error {
 public:
  ConfigError(std::string key_path, const std::string& message)
      : Error(key_path.empty() ? message : key_path + ": " + message), key_path_(std::move(key_path)) {}
  const std::string& key_path() const { return key_path_; }

 private:
  std::string key_path_;
};

// Bad data on disk (dataset files, traces): names the file and the fix.
class DataError : public Error {
 public:
  using Error::Error;
};

}  // namespace starling
