// The one error type of effcam: a one-line message that names the problem (file, layer, field...).
#pragma once

#include <stdexcept>
#include <string>

namespace effcam {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

}  // namespace effcam
