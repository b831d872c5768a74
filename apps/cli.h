// What the command-line tools share: number arguments, and one main() convention for errors and exit codes.
#pragma once

#include <cstdint>
#include <cstdio>
#include <new>
#include <string>

#include "effcam/error.hpp"

namespace effcam::cli {

// A whole number in [min, max] for `option`; throws effcam::Error naming the option and the text otherwise.
uint32_t parse_count(const std::string& option, const std::string& text, uint32_t min, uint32_t max);

// A tool's main(): a bad command line prints "NAME: message" and the usage and exits 2; an error while running
// prints "NAME: message" (one line) and exits 1; otherwise run()'s own status.
template <class Arguments>
int main_with(const char* name, const char* usage, int argc, char** argv, Arguments (*parse)(int, char**),
              int (*run)(const Arguments&)) {
  Arguments args;
  try {
    args = parse(argc, argv);
  } catch (const Error& e) {
    std::fprintf(stderr, "%s: %s\n%s", name, e.what(), usage);
    return 2;
  }
  try {
    return run(args);
  } catch (const Error& e) {
    std::fprintf(stderr, "%s: %s\n", name, e.what());
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "%s: out of memory\n", name);
  }
  return 1;
}

}  // namespace effcam::cli
