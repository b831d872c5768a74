// The kernel's own memory figures for this process (what the memory bars are measured in).
#pragma once

#include <cstdint>

namespace effcam {

uint64_t peak_rss_bytes();     // VmHWM: the high-water mark of resident memory
uint64_t current_rss_bytes();  // VmRSS
uint64_t pss_bytes();          // Pss (smaps_rollup): shared pages counted once per sharer; 0 where unreadable

}  // namespace effcam
