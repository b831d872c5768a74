// Small helpers shared by the doctest suites: where shared/ and generated test data live.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>

namespace effcam::test {

inline std::string env_or(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value ? std::string(value) : fallback;
}

// A file under ../shared, or nullopt with a printed skip note when shared/ is not beside the checkout.
inline std::optional<std::filesystem::path> shared_file(const std::string& relative) {
  std::filesystem::path path = std::filesystem::path(env_or("EFFCAM_SHARED_DIR", "../shared")) / relative;
  if (!std::filesystem::exists(path)) {
    std::printf("SKIP: %s is absent (shared/ not beside the checkout)\n", path.string().c_str());
    return std::nullopt;
  }
  return path;
}

// Scratch folder for files a test generates (models, images); created on first use.
inline std::filesystem::path testdata_dir() {
  std::filesystem::path dir = env_or("EFFCAM_TESTDATA_DIR", "testdata");
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace effcam::test
