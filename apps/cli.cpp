#include "apps/cli.h"

#include <charconv>

#include "effcam/error.hpp"

namespace effcam::cli {

uint32_t parse_count(const std::string& option, const std::string& text, uint32_t min, uint32_t max) {
  uint32_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || value < min || value > max) {
    throw Error(option + " wants a whole number from " + std::to_string(min) + " to " + std::to_string(max) +
                ", got '" + text + "'");
  }
  return value;
}

}  // namespace effcam::cli
