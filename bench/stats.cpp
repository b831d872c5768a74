#include "bench/stats.h"

#include <algorithm>
#include <cmath>

#include "effcam/error.hpp"

namespace effcam::bench {

double median(std::vector<double> samples) {
  if (samples.empty()) throw Error("no samples to take the median of");
  const size_t middle = samples.size() / 2;
  std::nth_element(samples.begin(), samples.begin() + middle, samples.end());
  const double upper = samples[middle];
  if (samples.size() % 2 == 1) return upper;
  const double lower = *std::max_element(samples.begin(), samples.begin() + middle);
  return (lower + upper) / 2;
}

LatencyStats latency_stats(std::vector<double> samples) {
  if (samples.empty()) throw Error("no latency samples");
  std::sort(samples.begin(), samples.end());
  const size_t rank = static_cast<size_t>(std::ceil(0.9 * static_cast<double>(samples.size())));
  return {samples.front(), median(samples), samples[std::max<size_t>(rank, 1) - 1]};
}

}  // namespace effcam::bench
