#include "base/process_memory.h"

#include <cstdio>
#include <cstring>

namespace effcam {

namespace {
// Reads a "Name:   1234 kB" line of a /proc file; 0 when unavailable.
uint64_t proc_kib(const char* path, const char* name) {
  std::FILE* file = std::fopen(path, "r");
  if (!file) return 0;
  char line[256];
  uint64_t value = 0;
  const size_t length = std::strlen(name);
  while (std::fgets(line, sizeof line, file)) {
    if (std::strncmp(line, name, length) == 0 && line[length] == ':') {
      unsigned long long kib = 0;
      if (std::sscanf(line + length + 1, "%llu", &kib) == 1) value = kib;
      break;
    }
  }
  std::fclose(file);
  return value * 1024;
}
}  // namespace

uint64_t peak_rss_bytes() { return proc_kib("/proc/self/status", "VmHWM"); }
uint64_t current_rss_bytes() { return proc_kib("/proc/self/status", "VmRSS"); }
uint64_t pss_bytes() { return proc_kib("/proc/self/smaps_rollup", "Pss"); }

}  // namespace effcam
