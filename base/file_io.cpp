#include "base/file_io.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "effcam/error.hpp"

namespace effcam {
namespace {

// The temporary file's name until it is renamed into place; removed if the write does not get that far.
class TemporaryFile {
 public:
  explicit TemporaryFile(std::string name) : name_(std::move(name)) {}
  TemporaryFile(const TemporaryFile&) = delete;
  TemporaryFile& operator=(const TemporaryFile&) = delete;
  ~TemporaryFile() {
    if (!name_.empty()) std::remove(name_.c_str());
  }
  const std::string& name() const { return name_; }
  void release() { name_.clear(); }

 private:
  std::string name_;
};

}  // namespace

void write_file_atomically(const std::string& path, std::span<const uint8_t> bytes, const std::string& what) {
  const std::string failed = "cannot write " + what + " '" + path + "': ";
  std::string pattern = path + ".tmp-XXXXXX";
  const int fd = mkstemp(pattern.data());
  if (fd < 0) throw Error(failed + std::strerror(errno), ErrorCode::Io);
  TemporaryFile temporary(pattern);
  fchmod(fd, 0644);  // mkstemp's 0600 would make the output unreadable to others, unlike a plain fopen
  std::FILE* file = fdopen(fd, "wb");
  if (!file) {
    const int error = errno;
    close(fd);
    throw Error(failed + std::strerror(error), ErrorCode::Io);
  }
  // Flushed to disk before the rename: after a crash the name holds either the old file or the complete new one.
  const bool written = std::fwrite(bytes.data(), 1, bytes.size(), file) == bytes.size() && std::fflush(file) == 0 &&
                       fsync(fileno(file)) == 0;
  const bool closed = std::fclose(file) == 0;
  if (!written || !closed) throw Error(failed + "write failed", ErrorCode::Io);
  if (std::rename(temporary.name().c_str(), path.c_str()) != 0) {
    throw Error(failed + std::strerror(errno), ErrorCode::Io);
  }
  temporary.release();
}

}  // namespace effcam
