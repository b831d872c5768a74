// effcam-serve's command line: what it serves, where, with how many sessions and how much waiting room.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "effcam/effcam.hpp"

namespace effcam::serve {

struct ModelSpec {
  std::string name;  // the URL's {name}: given as NAME=FILE, else the file's stem
  std::string path;
};

struct ServeOptions {
  std::vector<ModelSpec> models;
  std::string host = "127.0.0.1";
  uint16_t port = 8080;
  uint32_t sessions = 0;             // per model; 0 = one per core
  uint32_t threads_per_session = 1;
  uint32_t queue = 0;                // requests waiting for a session, per model (default 2 x sessions)
  bool queue_given = false;
  uint64_t max_body = uint64_t{5} << 20;
  uint32_t timeout_ms = 30000;       // from the request's headers to its session (and for a slow body)
  uint32_t workers = 0;              // 0: serve in this process; P: fork P workers sharing the socket
  uint32_t connections = 64;         // HTTP connections served at once (each holds a thread, not a session)
  uint64_t max_pixels = 12'000'000;  // larger images are refused (400)
  // An image whose decoding and pictures would need more is refused (400) before its pixels are allocated; each
  // session's share of the memory bound (PredictorOptions::max_image_bytes).
  uint64_t max_image_bytes = uint64_t{64} << 20;
  // Each session's arena at most (PredictorOptions::memory_budget_bytes; 0: the API's default plan). Deep CAM layers
  // recompute instead of keeping to fit; a CAM layer that cannot fit stops the start with its smallest arena.
  uint64_t memory_budget_bytes = 0;
  // The method a request gets when it asks for an overlay or heatmap without naming one; None plans the arenas
  // for the forward pass alone and refuses CAMs.
  CamMethod cam_default = CamMethod::GradCam;
  std::vector<std::string> cam_layers;  // layers requests may target besides each model's default
  std::string access_log;               // "" none, "-" stdout, else a file
};

// Parses argv; throws effcam::Error naming the bad flag or value.
ServeOptions parse_options(int argc, char** argv);

extern const char* const kUsage;

}  // namespace effcam::serve
