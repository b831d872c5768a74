// Whole files in and out: written through a temporary file beside the target and renamed over it, so a failed
// write never leaves a partial file behind.
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace effcam {

// Throws effcam::Error (ErrorCode::Io) naming the path and the system's reason. `what` starts the message
// ("cannot write image 'x'" style callers pass "image").
void write_file_atomically(const std::string& path, std::span<const uint8_t> bytes, const std::string& what = "file");

}  // namespace effcam
