// Whole files out: written through a temporary file beside the target and renamed over it, so a failed write never
// leaves a partial file behind.
#pragma once

#include <cstdint>
#include <cstdio>
#include <span>
#include <string>

namespace effcam {

// A file being written under a temporary name beside `path` (mode 0644, like a plain fopen), renamed over `path` by
// commit(); destroyed before that, it removes the temporary file. Errors are effcam::Error (ErrorCode::Io):
// "cannot write <what> '<path>': <the system's reason>".
class AtomicFile {
 public:
  AtomicFile(std::string path, std::string what);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  std::FILE* stream() const { return file_; }
  // Flushed to disk, closed, then renamed: after a crash the path holds either the old file or the complete new one.
  void commit();
  [[noreturn]] void fail(const std::string& problem) const;

 private:
  std::string path_, what_, temporary_;
  std::FILE* file_ = nullptr;
};

// Writes `bytes` to `path` through an AtomicFile. `what` names the file in messages ("image", "model").
void write_file_atomically(const std::string& path, std::span<const uint8_t> bytes, const std::string& what = "file");

}  // namespace effcam
