// What /metrics (Prometheus text format) and /health report: requests by endpoint and status, a latency histogram
// per endpoint. Endpoints are route templates ("/v1/models/{name}/predict"), never raw paths, so hostile URLs
// cannot grow the tables.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>

namespace effcam::serve {

class Metrics {
 public:
  void record(const std::string& endpoint, int status, double seconds);
  uint64_t requests() const;
  uint64_t requests_with_status(int status) const;
  // The counters and histograms in Prometheus text exposition format (gauges are the caller's).
  std::string prometheus() const;

  static constexpr std::array<double, 12> kBuckets = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                      0.5,   1,    2.5,   5,    10,  30};

 private:
  struct Histogram {
    std::array<uint64_t, kBuckets.size()> counts{};  // per bucket, not cumulative
    uint64_t count = 0;
    double sum = 0;
  };
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  std::map<std::string, Histogram> latency_;
};

}  // namespace effcam::serve
