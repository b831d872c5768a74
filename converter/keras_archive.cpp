#include "converter/keras_archive.h"

#include <zip.h>

#include <filesystem>
#include <system_error>

#include "effcam/error.hpp"

namespace effcam::keras {

namespace {

// Deflate cannot expand data by more than about 1032:1; anything claiming more is lying.
constexpr uint64_t kMaxDeflateRatio = 1040;

std::string human_bytes(uint64_t bytes) {
  constexpr uint64_t kMiB = 1024ull * 1024ull;
  if (bytes >= kMiB && bytes % kMiB == 0) return std::to_string(bytes / kMiB) + " MiB";
  return std::to_string(bytes) + " bytes";
}

}  // namespace

ZipArchive::ZipArchive(const std::string& path) : path_(path) {
  std::error_code ec;
  file_size_ = std::filesystem::file_size(path, ec);
  if (ec) throw Error(path + ": cannot read the file (" + ec.message() + ")");
  int code = 0;
  archive_ = zip_open(path.c_str(), ZIP_RDONLY, &code);
  if (archive_ == nullptr) {
    zip_error_t error;
    zip_error_init_with_code(&error, code);
    std::string reason = zip_error_strerror(&error);
    zip_error_fini(&error);
    if (code == ZIP_ER_NOZIP || code == ZIP_ER_INCONS) {
      throw Error(path + ": truncated or corrupt zip archive (" + reason + ")");
    }
    throw Error(path + ": cannot open the zip archive (" + reason + ")");
  }
}

ZipArchive::~ZipArchive() {
  if (archive_ != nullptr) zip_discard(archive_);
}

bool ZipArchive::has(const std::string& member) const {
  return zip_name_locate(archive_, member.c_str(), 0) >= 0;
}

std::vector<std::string> ZipArchive::member_names() const {
  std::vector<std::string> names;
  const zip_int64_t count = zip_get_num_entries(archive_, 0);
  for (zip_int64_t i = 0; i < count; ++i) {
    const char* name = zip_get_name(archive_, static_cast<zip_uint64_t>(i), 0);
    if (name != nullptr) names.emplace_back(name);
  }
  return names;
}

std::vector<uint8_t> ZipArchive::read(const std::string& member, uint64_t max_bytes) const {
  const std::string where = path_ + ": zip member " + member;
  const zip_int64_t index = zip_name_locate(archive_, member.c_str(), 0);
  if (index < 0) throw Error(where + " is missing");
  zip_stat_t st;
  zip_stat_init(&st);
  if (zip_stat_index(archive_, static_cast<zip_uint64_t>(index), 0, &st) != 0) {
    throw Error(where + ": cannot stat (" + std::string(zip_strerror(archive_)) + ")");
  }
  if (!(st.valid & ZIP_STAT_SIZE) || !(st.valid & ZIP_STAT_COMP_SIZE) || !(st.valid & ZIP_STAT_COMP_METHOD)) {
    throw Error(where + ": the archive does not record its size");
  }
  if ((st.valid & ZIP_STAT_ENCRYPTION_METHOD) && st.encryption_method != ZIP_EM_NONE) {
    throw Error(where + " is encrypted");
  }
  const uint64_t size = st.size;
  if (size > max_bytes) {
    throw Error(where + " declares " + std::to_string(size) + " bytes, more than the " +
                human_bytes(max_bytes) + " allowed for it");
  }
  if (st.comp_size > file_size_) {
    throw Error(where + " declares " + std::to_string(st.comp_size) + " compressed bytes but the archive has only " +
                std::to_string(file_size_) + " bytes (truncated or corrupt archive)");
  }
  if (st.comp_method == ZIP_CM_STORE) {
    if (size != st.comp_size) {
      throw Error(where + " is stored uncompressed but declares " + std::to_string(size) + " bytes for " +
                  std::to_string(st.comp_size) + " stored bytes (corrupt archive)");
    }
  } else if (size / kMaxDeflateRatio > st.comp_size) {
    throw Error(where + " declares " + std::to_string(size) + " bytes from only " + std::to_string(st.comp_size) +
                " compressed bytes, beyond what compression allows (corrupt or hostile archive)");
  }

  zip_file_t* file = zip_fopen_index(archive_, static_cast<zip_uint64_t>(index), 0);
  if (file == nullptr) {
    throw Error(where + ": cannot open (" + std::string(zip_strerror(archive_)) + ")");
  }
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  uint64_t done = 0;
  std::string failure;
  while (done < size) {
    const zip_int64_t got = zip_fread(file, bytes.data() + done, size - done);
    if (got < 0) {
      failure = zip_file_strerror(file);
      break;
    }
    if (got == 0) break;
    done += static_cast<uint64_t>(got);
  }
  if (failure.empty() && done == size) {
    // Reading on to the end makes libzip verify the CRC (a 1-byte probe must return 0).
    uint8_t probe = 0;
    const zip_int64_t extra = zip_fread(file, &probe, 1);
    if (extra < 0) failure = zip_file_strerror(file);
    else if (extra > 0) failure = "more data than its declared size";
  }
  zip_fclose(file);
  if (!failure.empty()) throw Error(where + ": cannot read (" + failure + ")");
  if (done != size) {
    throw Error(where + " is truncated: got " + std::to_string(done) + " of " + std::to_string(size) + " bytes");
  }
  return bytes;
}

}  // namespace effcam::keras
