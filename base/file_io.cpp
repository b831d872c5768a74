#include "base/file_io.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "effcam/error.hpp"

namespace effcam {

AtomicFile::AtomicFile(std::string path, std::string what)
    : path_(std::move(path)), what_(std::move(what)), temporary_(path_ + ".tmp-XXXXXX") {
  const int fd = mkstemp(temporary_.data());
  if (fd < 0) {
    temporary_.clear();
    fail(std::strerror(errno));
  }
  fchmod(fd, 0644);  // mkstemp's 0600 would make the output unreadable to others, unlike a plain fopen
  file_ = fdopen(fd, "wb");
  if (!file_) {
    const int error = errno;
    close(fd);
    std::remove(temporary_.c_str());
    temporary_.clear();
    fail(std::strerror(error));
  }
}

AtomicFile::~AtomicFile() {
  if (file_) std::fclose(file_);
  if (!temporary_.empty()) std::remove(temporary_.c_str());
}

void AtomicFile::commit() {
  const bool written = std::fflush(file_) == 0 && fsync(fileno(file_)) == 0;
  const bool closed = std::fclose(file_) == 0;
  file_ = nullptr;
  if (!written || !closed) fail("write failed");
  if (std::rename(temporary_.c_str(), path_.c_str()) != 0) fail(std::strerror(errno));
  temporary_.clear();
}

void AtomicFile::fail(const std::string& problem) const {
  throw Error("cannot write " + what_ + " '" + path_ + "': " + problem, ErrorCode::Io);
}

void write_file_atomically(const std::string& path, std::span<const uint8_t> bytes, const std::string& what) {
  AtomicFile file(path, what);
  if (std::fwrite(bytes.data(), 1, bytes.size(), file.stream()) != bytes.size()) file.fail("write failed");
  file.commit();
}

}  // namespace effcam
