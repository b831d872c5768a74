// Summary statistics of repeated timings.
#pragma once

#include <vector>

namespace effcam::bench {

struct LatencyStats {
  double min = 0;
  double median = 0;  // the mean of the two middle samples for an even count
  double p90 = 0;     // 90th percentile, nearest rank: the smallest sample with at least 90 % at or below it
};

// Throws effcam::Error when there are no samples.
LatencyStats latency_stats(std::vector<double> samples);
double median(std::vector<double> samples);

}  // namespace effcam::bench
