// Command-line helpers shared by the bench tools.
#pragma once

#include <cstdint>
#include <string>

namespace effcam::bench {

// A whole number in [min, max] for `option`; throws effcam::Error naming the option and the text otherwise.
uint32_t parse_count(const std::string& option, const std::string& text, uint32_t min, uint32_t max);

}  // namespace effcam::bench
