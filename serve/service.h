// The HTTP service: effcam's own API (/predict, /v1/models...), health, memory, metrics, the web page and the Open
// Inference Protocol (oip.cpp), over one SessionPool per model. Handlers call only the public effcam API.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "effcam/effcam.hpp"
#include "serve/metrics.h"
#include "serve/options.h"
#include "serve/session_pool.h"
#include "serve/watchdog.h"

namespace effcam::serve {

// The memory the service can use, planned before the port opens (bytes).
struct MemoryPlan {
  uint64_t weights = 0;        // the models' weights: mmap'd read-only, shared by every worker
  uint64_t arenas = 0;         // every session's arena (forward + CAM at the allowed layers)
  uint64_t images = 0;         // decode / resize / picture buffers of the requests running at once
  uint64_t bodies = 0;         // request bodies of the requests admitted at once (running + queued)
  uint64_t process = 0;        // the process before any model: code, libraries, heap, thread stacks
  uint64_t bound() const { return weights + arenas + images + bodies + process; }
};

// An answer that is not 200: its status and one line for {"error": ...}.
struct HttpError {
  int status;
  std::string message;
};

class Service {
 public:
  Service(const ServeOptions& options, const std::vector<Model>& models, uint64_t process_bytes);

  // Routes, limits and handlers on `server` (not yet listening).
  void install(httplib::Server& server);
  // Starts dropping slow clients of the port the server listens on.
  void start_watchdog(uint16_t port);
  const MemoryPlan& plan() const { return plan_; }
  std::string plan_text() const;  // what effcam-serve prints at start

  // Shared with the Open Inference Protocol handlers.
  SessionPool* find(const std::string& name) const;  // nullptr for an unknown model
  SessionPool& first() const { return *pools_.front(); }
  const std::vector<std::unique_ptr<SessionPool>>& pools() const { return pools_; }
  bool ready() const;
  // Takes a place in the pool (503 when there is none) before `read_input` reads the body, then waits for a
  // session until the request's deadline (503) and predicts; throws HttpError. `read_input`'s image points into
  // memory the caller keeps alive.
  using InputReader = std::function<std::pair<ImageSource, PredictOptions>()>;
  Prediction run(SessionPool& pool, const InputReader& read_input) const;
  // Checks a CAM request against what the pool was planned for; throws HttpError (422).
  void check_cam(const SessionPool& pool, PredictOptions& options) const;
  // Reads and drops the body of a request refused before reading it (Connection: close when that fails).
  void discard_body(const httplib::Request& request, const httplib::ContentReader& reader,
                    httplib::Response& response) const;
  // Reads the whole body (raw or multipart field `image`) within the limits; throws HttpError.
  std::string read_body(const httplib::Request& request, const httplib::ContentReader& reader,
                        const std::string& multipart_field) const;

  static void answer(httplib::Response& response, int status, const std::string& json_body);
  static void answer_error(httplib::Response& response, const HttpError& error);
  static std::string error_body(const std::string& message);
  // Marks the request's endpoint for metrics and the access log (a route template).
  static void set_endpoint(const char* endpoint);

 private:
  void predict(const httplib::Request& request, httplib::Response& response, const httplib::ContentReader& reader,
               SessionPool& pool) const;
  PredictOptions predict_options(const httplib::Request& request, const SessionPool& pool) const;
  nlohmann::json model_info(const SessionPool& pool) const;
  nlohmann::json memory_json() const;
  std::string metrics_text() const;
  httplib::Server::HandlerResponse before_routing(const httplib::Request& request, httplib::Response& response);
  void after_response(const httplib::Request& request, const httplib::Response& response);
  void on_error(const httplib::Request& request, httplib::Response& response) const;

  ServeOptions options_;
  std::vector<std::unique_ptr<SessionPool>> pools_;
  MemoryPlan plan_;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  Metrics metrics_;
  Watchdog watchdog_;
  FILE* access_log_ = nullptr;
  std::mutex access_log_mutex_;
};

// The Open Inference Protocol's routes (oip.cpp).
void install_open_inference_protocol(Service& service, httplib::Server& server);

// The request's deadline (its headers' arrival + --timeout-ms), set before routing.
std::chrono::steady_clock::time_point request_deadline();

}  // namespace effcam::serve
