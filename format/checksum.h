// CRC-32C (Castagnoli), the checksum of .effcam headers and sections.
#pragma once

#include <cstdint>
#include <span>

namespace effcam {

// CRC-32C of `bytes`, continuing from `crc` (the result of a previous call; 0 to start), so
// crc32c(b, crc32c(a)) == crc32c(a followed by b). Uses the SSE4.2 instruction when the CPU has it.
uint32_t crc32c(std::span<const uint8_t> bytes, uint32_t crc = 0);

// The two implementations behind crc32c(), exposed so tests can check they agree.
uint32_t crc32c_software(std::span<const uint8_t> bytes, uint32_t crc = 0);  // slicing-by-8
bool crc32c_hardware_available();
// Precondition: crc32c_hardware_available().
uint32_t crc32c_hardware(std::span<const uint8_t> bytes, uint32_t crc = 0);

}  // namespace effcam
