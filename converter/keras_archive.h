// Read-only access to a zip archive (a Keras 3 `.keras` file) through libzip, with size caps so that a
// hostile archive cannot make us allocate more than the caller allows.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

struct zip;

namespace effcam::keras {

class ZipArchive {
 public:
  // Opens `path` read-only. Throws effcam::Error when it is not a readable zip archive (including a
  // truncated one, whose central directory is missing).
  explicit ZipArchive(const std::string& path);
  ~ZipArchive();
  ZipArchive(const ZipArchive&) = delete;
  ZipArchive& operator=(const ZipArchive&) = delete;

  bool has(const std::string& member) const;
  std::vector<std::string> member_names() const;

  // The member's uncompressed bytes. Refuses (effcam::Error), before allocating anything, a member whose
  // declared size exceeds `max_bytes`, or more than the archive can hold: a stored member larger than the
  // archive file, a compressed one beyond the deflate ratio limit. Throws when the member is absent,
  // encrypted, truncated or fails its CRC.
  std::vector<uint8_t> read(const std::string& member, uint64_t max_bytes) const;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  uint64_t file_size_ = 0;
  struct zip* archive_ = nullptr;
};

}  // namespace effcam::keras
