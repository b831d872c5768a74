// A small read-only RAII wrapper over libhdf5 for the Keras reader: groups, string attributes (fixed-length
// or variable-length, scalar or arrays, Keras' chunked `name0..N` attributes) and numeric datasets read
// as fp32. Every failure becomes an effcam::Error; libhdf5's own stderr error stacks are silenced.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "converter/keras_model.h"

namespace effcam::h5 {

// Owns one HDF5 identifier and closes it with the matching H5?close.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  ~Handle() { reset(); }
  Handle(Handle&& other) noexcept : id_(other.id_), closer_(other.closer_) { other.id_ = H5I_INVALID_HID; }
  Handle& operator=(Handle&& other) noexcept {
    if (this != &other) {
      reset();
      id_ = other.id_;
      closer_ = other.closer_;
      other.id_ = H5I_INVALID_HID;
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;

  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  void reset() {
    if (id_ >= 0 && closer_ != nullptr) closer_(id_);
    id_ = H5I_INVALID_HID;
  }

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer closer_ = nullptr;
};

// Turns libhdf5's automatic error printing off while alive (restoring the previous handler after).
class QuietErrors {
 public:
  QuietErrors();
  ~QuietErrors();
  QuietErrors(const QuietErrors&) = delete;
  QuietErrors& operator=(const QuietErrors&) = delete;

 private:
  H5E_auto2_t old_func_ = nullptr;
  void* old_data_ = nullptr;
};

// The innermost description on libhdf5's current error stack ("" if none); call right after a failure.
std::string last_error();

// An in-memory HDF5 image as libhdf5's file-image callbacks see it (see File::open_image).
struct ImageView {
  void* data = nullptr;
  size_t size = 0;
};

// Largest dataset the reader accepts, in elements (4 GiB of fp32).
inline constexpr uint64_t kMaxDatasetElements = uint64_t{1} << 30;

class File {
 public:
  // Opens an HDF5 file on disk read-only; `label` starts error messages ("" for none).
  static File open_path(const std::string& path, const std::string& label);
  // Opens HDF5 bytes held in memory (the `model.weights.h5` member of a `.keras` zip), without copying
  // them; `label` names the file in error messages.
  static File open_image(std::vector<uint8_t> image, const std::string& label);

  File(File&&) noexcept = default;
  File& operator=(File&&) noexcept = default;
  ~File();

  const std::string& label() const { return label_; }
  // label + ": ", or "" without a label.
  std::string prefix() const { return label_.empty() ? std::string() : label_ + ": "; }

  // Paths are absolute inside the file ("/layers/conv2d/vars").
  bool exists(const std::string& path) const;
  bool is_group(const std::string& path) const;
  bool is_dataset(const std::string& path) const;
  // Link names inside a group, in name order.
  std::vector<std::string> children(const std::string& group) const;

  bool has_attr(const std::string& object, const std::string& name) const;
  // A string attribute (scalar, or the first of a one-element array); nullopt when absent.
  std::optional<std::string> string_attr(const std::string& object, const std::string& name) const;
  // A list of strings: `name`, or Keras' chunks `name0`, `name1`, ... concatenated; an empty numeric
  // array (how h5py stores an empty list) gives an empty list; nullopt when absent.
  std::optional<std::vector<std::string>> string_list_attr(const std::string& object,
                                                           const std::string& name) const;

  // A float16/32/64, integer or bfloat16 (uint16 with attribute dtype="bfloat16") dataset as fp32.
  keras::Array read_array(const std::string& dataset) const;

 private:
  File() = default;
  std::vector<std::string> read_strings(hid_t attr, const std::string& what) const;

  std::string label_;
  // An in-memory image and the callbacks' view of it must outlive file_ (declared first, destroyed last).
  std::unique_ptr<std::vector<uint8_t>> image_;
  std::unique_ptr<ImageView> view_;
  Handle file_;
};

}  // namespace effcam::h5
