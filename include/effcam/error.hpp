// effcam's one exception type: a one-line message naming the problem (file, layer, field...) and what kind of
// problem it is, so that bindings can map it (C error codes, Python exception classes).
#pragma once

#include <stdexcept>
#include <string>

#include "effcam/export.hpp"

namespace effcam {

enum class ErrorCode {
  InvalidArgument = 1,  // a bad option or argument: unknown layer or method, class out of range, wrong sizes
  Io = 2,               // a file that cannot be opened, read or written
  Format = 3,           // a model file (.effcam, .keras, .h5) that is corrupt, truncated or unsupported
  Image = 4,            // an image that cannot be decoded: not an image, truncated, corrupt, over the limits
  OutOfMemory = 5,
  Internal = 6,         // a bug in effcam
};

class EFFCAM_API Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message, ErrorCode code = ErrorCode::InvalidArgument)
      : std::runtime_error(message), code_(code) {}
  ErrorCode code() const noexcept { return code_; }

 private:
  ErrorCode code_;
};

}  // namespace effcam
