#include "serve/metrics.h"

#include <sstream>

namespace effcam::serve {

void Metrics::record(const std::string& endpoint, int status, double seconds) {
  std::lock_guard lock(mutex_);
  ++requests_[{endpoint, status}];
  Histogram& h = latency_[endpoint];
  size_t bucket = 0;
  while (bucket < kBuckets.size() && seconds > kBuckets[bucket]) ++bucket;
  if (bucket < kBuckets.size()) ++h.counts[bucket];
  ++h.count;
  h.sum += seconds;
}

uint64_t Metrics::requests() const {
  std::lock_guard lock(mutex_);
  uint64_t total = 0;
  for (const auto& [key, count] : requests_) total += count;
  return total;
}

uint64_t Metrics::requests_with_status(int status) const {
  std::lock_guard lock(mutex_);
  uint64_t total = 0;
  for (const auto& [key, count] : requests_) total += key.second == status ? count : 0;
  return total;
}

std::string Metrics::prometheus() const {
  std::lock_guard lock(mutex_);
  std::ostringstream out;
  out << "# HELP effcam_requests_total HTTP requests answered, by endpoint and status code.\n"
         "# TYPE effcam_requests_total counter\n";
  for (const auto& [key, count] : requests_) {
    out << "effcam_requests_total{endpoint=\"" << key.first << "\",code=\"" << key.second << "\"} " << count << "\n";
  }
  out << "# HELP effcam_request_duration_seconds Time from the request's headers to its answer, by endpoint.\n"
         "# TYPE effcam_request_duration_seconds histogram\n";
  for (const auto& [endpoint, h] : latency_) {
    uint64_t cumulative = 0;
    for (size_t i = 0; i < kBuckets.size(); ++i) {
      cumulative += h.counts[i];
      out << "effcam_request_duration_seconds_bucket{endpoint=\"" << endpoint << "\",le=\"" << kBuckets[i]
          << "\"} " << cumulative << "\n";
    }
    out << "effcam_request_duration_seconds_bucket{endpoint=\"" << endpoint << "\",le=\"+Inf\"} " << h.count
        << "\n";
    out << "effcam_request_duration_seconds_sum{endpoint=\"" << endpoint << "\"} " << h.sum << "\n";
    out << "effcam_request_duration_seconds_count{endpoint=\"" << endpoint << "\"} " << h.count << "\n";
  }
  return out.str();
}

}  // namespace effcam::serve
