#include "serve/service.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <new>
#include <sstream>

#include "serve/page.h"

namespace effcam::serve {

using nlohmann::json;

namespace {

// What the handlers of one request share on its connection thread: set before routing, read by the logger.
struct RequestState {
  std::chrono::steady_clock::time_point start;
  std::chrono::steady_clock::time_point deadline;
  const char* endpoint = "other";
};
thread_local RequestState current;
thread_local bool body_read = false;  // whether this request's handler has read its body

constexpr uint32_t kMaxHeaders = 100;

// JSON text of names and messages that may hold anything a client sent (invalid UTF-8 is replaced).
std::string dump(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

int status_of(const Error& error) {
  switch (error.code()) {
    case ErrorCode::Image: return 400;
    case ErrorCode::InvalidArgument: return 422;
    case ErrorCode::OutOfMemory: return 503;
    default: return 500;
  }
}

uint64_t parse_whole(const std::string& name, const std::string& text, uint64_t min, uint64_t max) {
  uint64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || value < min || value > max) {
    throw HttpError{422, name + " wants a whole number from " + std::to_string(min) + " to " + std::to_string(max) +
                             ", got '" + text + "'"};
  }
  return value;
}

// The route templates a path could belong to, for 405 (and the methods each accepts).
struct Route {
  const char* pattern;
  const char* methods;
};
constexpr Route kRoutes[] = {
    {"/", "GET"},
    {"/health", "GET"},
    {"/health/live", "GET"},
    {"/health/ready", "GET"},
    {"/memory", "GET"},
    {"/metrics", "GET"},
    {"/predict", "POST"},
    {"/v1/models", "GET"},
    {"/v1/models/[^/]+", "GET"},
    {"/v1/models/[^/]+/predict", "POST"},
    {"/v2", "GET"},
    {"/v2/health/live", "GET"},
    {"/v2/health/ready", "GET"},
    {"/v2/models/[^/]+(/versions/[^/]+)?", "GET"},
    {"/v2/models/[^/]+(/versions/[^/]+)?/ready", "GET"},
    {"/v2/models/[^/]+(/versions/[^/]+)?/infer", "POST"},
};

const char* allowed_methods(const std::string& path) {
  for (const Route& route : kRoutes) {
    if (std::regex_match(path, std::regex(route.pattern))) return route.methods;
  }
  return nullptr;
}

// The line of an error cpp-httplib answered itself (before any handler ran).
std::string status_text(int status) {
  switch (status) {
    case 400: return "bad request (malformed request line, headers or body)";
    case 413: return "the body is over --max-body";
    case 414: return "the request line is too long";
    case 416: return "bad Range header";
    default: return "HTTP status " + std::to_string(status);
  }
}

}  // namespace

std::chrono::steady_clock::time_point request_deadline() { return current.deadline; }

void Service::set_endpoint(const char* endpoint) { current.endpoint = endpoint; }

std::string Service::error_body(const std::string& message) { return dump(json{{"error", message}}); }

void Service::answer(httplib::Response& response, int status, const std::string& json_body) {
  response.status = status;
  response.set_content(json_body, "application/json");
}

void Service::answer_error(httplib::Response& response, const HttpError& error) {
  answer(response, error.status, error_body(error.message));
  if (error.status == 503) response.set_header("Retry-After", "1");
}

Service::Service(const ServeOptions& options, const std::vector<Model>& models, uint64_t process_bytes)
    : options_(options) {
  for (size_t i = 0; i < models.size(); ++i) {
    const Model& model = models[i];
    PredictorOptions predictor;
    predictor.threads = options.threads_per_session;
    predictor.max_image_pixels = options.max_pixels;
    predictor.max_image_bytes = options.max_image_bytes;
    predictor.memory_budget_bytes = options.memory_budget_bytes;
    predictor.explain = options.cam_default != CamMethod::None && !model.default_cam_layer().empty();
    if (predictor.explain) {
      predictor.cam_layers.push_back(model.default_cam_layer());
      for (const std::string& layer : options.cam_layers) {
        const std::string& resolved = model.cam_layer(layer).name;  // throws naming an unknown layer
        if (std::find(predictor.cam_layers.begin(), predictor.cam_layers.end(), resolved) ==
            predictor.cam_layers.end()) {
          predictor.cam_layers.push_back(resolved);
        }
      }
    }
    pools_.push_back(std::make_unique<SessionPool>(options.models[i].name, model, options.sessions,
                                                   options.queue, predictor));
    plan_.weights += model.weight_bytes();
    plan_.arenas += uint64_t{options.sessions} * pools_.back()->planned().arena_bytes();
    plan_.images += uint64_t{options.sessions} * pools_.back()->planned().image_bytes();
  }
  // Every admitted request may hold a whole body (running or queued), and a running one its copy for the parser.
  plan_.bodies = uint64_t{pools_.size()} * (options.sessions + options.queue) * options.max_body;
  plan_.process = process_bytes;
  if (options.access_log == "-") {
    access_log_ = stdout;
  } else if (!options.access_log.empty()) {
    access_log_ = std::fopen(options.access_log.c_str(), "a");
    if (access_log_ == nullptr) throw Error("cannot open the access log '" + options.access_log + "'", ErrorCode::Io);
  }
}

std::string Service::plan_text() const {
  auto mib = [](uint64_t bytes) {
    char text[32];
    std::snprintf(text, sizeof(text), "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
    return std::string(text);
  };
  std::ostringstream out;
  out << "memory plan (bytes):\n";
  out << "  weights   " << plan_.weights << " (" << mib(plan_.weights) << ", mmap'd, shared by workers)\n";
  for (const auto& pool : pools_) {
    out << "  arenas    " << pool->sessions() << " x " << pool->planned().arena_bytes() << " (" << pool->name()
        << ": forward" << (pool->planned().cam_layers().empty() ? "" : " + CAM") << ")\n";
    out << "  images    " << pool->sessions() << " x " << pool->planned().image_bytes()
        << " (--max-image-mib for decoding, resizing and pictures, + the model-size CAM, pictures and JSON)\n";
  }
  out << "  bodies    " << plan_.bodies << " ((sessions + queue) x --max-body " << options_.max_body << ")\n";
  out << "  process   " << plan_.process << " (code, libraries, heap and threads before the models)\n";
  out << "  bound     " << plan_.bound() << " (" << mib(plan_.bound()) << ")\n";
  return out.str();
}

SessionPool* Service::find(const std::string& name) const {
  for (const auto& pool : pools_) {
    if (pool->name() == name) return pool.get();
  }
  return nullptr;
}

bool Service::ready() const {
  return std::none_of(pools_.begin(), pools_.end(), [](const auto& pool) { return pool->full(); });
}

void Service::check_cam(const SessionPool& pool, PredictOptions& options) const {
  const bool wants_pictures =
      options.pictures.overlay != ImageFormat::None || options.pictures.heatmap != ImageFormat::None;
  if (options.cam == CamMethod::None && wants_pictures) options.cam = options_.cam_default;
  // The CAM's own parameters are checked even when no CAM is asked for: a typo is an error, not ignored.
  const bool cam_parameters = !options.cam_layer.empty() || options.cam_class.has_value();
  if (options.cam == CamMethod::None && !cam_parameters) return;
  const std::vector<std::string>& layers = pool.planned().cam_layers();
  if (layers.empty()) throw HttpError{422, "CAMs are off on this server (--cam-default none)"};
  if (!options.cam_layer.empty()) {
    std::string resolved;
    try {
      resolved = pool.model().cam_layer(options.cam_layer).name;
    } catch (const Error& e) {
      throw HttpError{422, e.what()};
    }
    if (std::find(layers.begin(), layers.end(), resolved) == layers.end()) {
      std::string list;
      for (const std::string& layer : layers) list += (list.empty() ? "" : ", ") + layer;
      throw HttpError{422, "cam_layer '" + options.cam_layer + "' is not served (allowed: " + list +
                               "; start with --cam-layers to add layers)"};
    }
    options.cam_layer = resolved;
  }
  if (options.cam_class && *options.cam_class >= pool.model().classes()) {
    throw HttpError{422, "cam_class " + std::to_string(*options.cam_class) + " is out of range (the model has " +
                             std::to_string(pool.model().classes()) + " classes)"};
  }
}

PredictOptions Service::predict_options(const httplib::Request& request, const SessionPool& pool) const {
  PredictOptions options;
  for (const auto& [key, value] : request.params) {
    if (request.get_param_value_count(key) > 1) throw HttpError{422, "query parameter '" + key + "' given twice"};
    try {
      if (key == "top_k") {
        options.top_k = static_cast<uint32_t>(parse_whole(key, value, 1, 1'000'000));
      } else if (key == "cam") {
        options.cam = parse_cam_method(value);
      } else if (key == "cam_layer") {
        options.cam_layer = value;
      } else if (key == "cam_score") {
        options.cam_score = parse_cam_score(value);
      } else if (key == "cam_class") {
        options.cam_class = static_cast<uint32_t>(parse_whole(key, value, 0, UINT32_MAX));
      } else if (key == "overlay") {
        options.pictures.overlay = parse_image_format(value);
      } else if (key == "heatmap") {
        options.pictures.heatmap = parse_image_format(value);
      } else if (key == "overlay_size") {
        options.pictures.render_size = parse_render_size(value);
      } else {
        throw HttpError{422, "unknown query parameter '" + key +
                                 "' (top_k, cam, cam_layer, cam_score, cam_class, overlay, overlay_size, heatmap)"};
      }
    } catch (const Error& e) {
      throw HttpError{422, e.what()};
    }
  }
  check_cam(pool, options);
  return options;
}

std::string Service::read_body(const httplib::Request& request, const httplib::ContentReader& reader,
                               const std::string& multipart_field) const {
  std::string body;
  bool too_large = false, too_late = false, found = false;
  auto append = [&](const char* data, size_t size) {
    if (body.size() + size > options_.max_body) {
      too_large = true;
      return false;
    }
    if (std::chrono::steady_clock::now() > current.deadline) {
      too_late = true;
      return false;
    }
    body.append(data, size);
    return true;
  };
  if (request.has_header("Content-Length")) body.reserve(std::stoull(request.get_header_value("Content-Length")));
  bool complete;
  if (request.is_multipart_form_data()) {
    bool in_field = false;
    uint64_t other_bytes = 0;
    complete = reader(
        [&](const httplib::MultipartFormData& part) {
          in_field = part.name == multipart_field && !found;
          found = found || in_field;
          return true;
        },
        [&](const char* data, size_t size) {
          if (in_field) return append(data, size);
          other_bytes += size;  // other fields are skipped, within the same limit
          too_large = other_bytes > options_.max_body;
          return !too_large;
        });
  } else {
    complete = reader(append);
    found = true;
  }
  if (too_large) throw HttpError{413, "the body is over --max-body " + std::to_string(options_.max_body) + " bytes"};
  if (too_late) throw HttpError{408, "the body did not arrive within the timeout"};
  if (!complete) {
    throw HttpError{400, request.is_multipart_form_data() ? "malformed multipart body" : "incomplete body"};
  }
  if (!found) throw HttpError{400, "the multipart body has no '" + multipart_field + "' field"};
  if (body.empty()) throw HttpError{400, "no image in the body"};
  return body;
}

Prediction Service::run(SessionPool& pool, const InputReader& read_input) const {
  std::optional<SessionPool::Ticket> ticket = pool.admit();
  if (!ticket) {
    throw HttpError{503, "overloaded: " + std::to_string(pool.sessions()) + " sessions busy and " +
                             std::to_string(pool.queue_limit()) + " requests waiting"};
  }
  const auto [image, options] = read_input();
  std::optional<SessionPool::Lease> lease = pool.acquire(*ticket, current.deadline);
  if (!lease) throw HttpError{503, "no session became free within --timeout-ms " + std::to_string(options_.timeout_ms)};
  try {
    return lease->predictor().predict(image, options);
  } catch (const Error& e) {
    throw HttpError{status_of(e), e.what()};
  } catch (const std::bad_alloc&) {
    throw HttpError{503, "out of memory"};
  }
}

void Service::predict(const httplib::Request& request, httplib::Response& response,
                      const httplib::ContentReader& reader, SessionPool& pool) const {
  body_read = false;
  try {
    PredictOptions options = predict_options(request, pool);
    const std::string type = request.get_header_value("Content-Type");
    const bool raw = type.rfind("image/", 0) == 0 || type.rfind("application/octet-stream", 0) == 0;
    if (!raw && !request.is_multipart_form_data()) {
      throw HttpError{415, "Content-Type '" + type +
                               "' is not an image: send image/*, application/octet-stream or multipart/form-data"};
    }
    std::string body;
    const Prediction prediction = run(pool, [&] {
      body_read = true;
      body = read_body(request, reader, "image");
      const std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(body.data()), body.size());
      return std::make_pair(ImageSource::encoded(bytes, "upload"), options);
    });
    JsonOptions json_options;
    json_options.model = pool.name();
    json_options.embed_images = true;
    answer(response, 200, to_json(prediction, json_options));
  } catch (const HttpError& error) {
    answer_error(response, error);
    if (!body_read) discard_body(request, reader, response);
  }
}

void Service::discard_body(const httplib::Request& request, const httplib::ContentReader& reader,
                           httplib::Response& response) const {
  // A request refused before its body was read: the body is read and dropped (within --max-body and the
  // deadline, never kept), so the connection stays in step and the client is not reset while still sending.
  uint64_t seen = 0;
  auto drop = [&](const char*, size_t size) {
    seen += size;
    return seen <= options_.max_body && std::chrono::steady_clock::now() <= current.deadline;
  };
  const bool complete = request.is_multipart_form_data()
                            ? reader([](const httplib::MultipartFormData&) { return true; }, drop)
                            : reader(drop);
  if (!complete) response.set_header("Connection", "close");
}

json Service::model_info(const SessionPool& pool) const {
  const Model& model = pool.model();
  json layers = json::array();
  for (const LayerInfo& layer : model.cam_layers()) {
    layers.push_back({{"name", layer.name}, {"class_name", layer.class_name}, {"height", layer.height},
                      {"width", layer.width}, {"channels", layer.channels}});
  }
  return {{"name", pool.name()},
          {"file", model.path()},
          {"input", {{"height", model.input_height()}, {"width", model.input_width()},
                     {"channels", model.input_channels()}}},
          {"classes", model.classes()},
          {"labels", model.labels()},
          {"cam_layers", layers},
          {"default_cam_layer", model.default_cam_layer()},
          {"served_cam_layers", pool.planned().cam_layers()},
          {"arena_bytes", pool.planned().arena_bytes()},
          {"sessions", pool.sessions()},
          {"weight_bytes", model.weight_bytes()}};
}

json Service::memory_json() const {
  const effcam::ProcessMemory memory = process_memory();
  return {{"rss_bytes", memory.rss_bytes},  {"peak_rss_bytes", memory.peak_rss_bytes}, {"pss_bytes", memory.pss_bytes},
          {"weights_bytes", plan_.weights}, {"arenas_bytes", plan_.arenas},      {"images_bytes", plan_.images},
          {"bodies_bytes", plan_.bodies},   {"process_bytes", plan_.process},   {"bound_bytes", plan_.bound()}};
}

std::string Service::metrics_text() const {
  std::ostringstream out;
  out << metrics_.prometheus();
  out << "# HELP effcam_queue_depth Requests admitted and waiting for a session.\n# TYPE effcam_queue_depth gauge\n";
  for (const auto& pool : pools_) out << "effcam_queue_depth{model=\"" << pool->name() << "\"} " << pool->waiting() << "\n";
  out << "# HELP effcam_sessions_busy Sessions running a prediction.\n# TYPE effcam_sessions_busy gauge\n";
  for (const auto& pool : pools_) out << "effcam_sessions_busy{model=\"" << pool->name() << "\"} " << pool->busy() << "\n";
  out << "# HELP effcam_sessions Sessions planned.\n# TYPE effcam_sessions gauge\n";
  for (const auto& pool : pools_) out << "effcam_sessions{model=\"" << pool->name() << "\"} " << pool->sessions() << "\n";
  const effcam::ProcessMemory memory = process_memory();
  out << "# HELP effcam_rss_bytes Resident memory of this process.\n# TYPE effcam_rss_bytes gauge\n"
      << "effcam_rss_bytes " << memory.rss_bytes << "\n";
  out << "# HELP effcam_peak_rss_bytes Peak resident memory of this process.\n# TYPE effcam_peak_rss_bytes gauge\n"
      << "effcam_peak_rss_bytes " << memory.peak_rss_bytes << "\n";
  out << "# HELP effcam_memory_bound_bytes The planned memory bound.\n# TYPE effcam_memory_bound_bytes gauge\n"
      << "effcam_memory_bound_bytes " << plan_.bound() << "\n";
  out << "# HELP effcam_slow_clients_dropped_total Connections dropped for not sending a request in time.\n"
         "# TYPE effcam_slow_clients_dropped_total counter\n"
      << "effcam_slow_clients_dropped_total " << watchdog_.dropped() << "\n";
  return out.str();
}

httplib::Server::HandlerResponse Service::before_routing(const httplib::Request& request,
                                                         httplib::Response& response) {
  current.start = std::chrono::steady_clock::now();
  current.deadline = current.start + std::chrono::milliseconds(options_.timeout_ms);
  current.endpoint = "other";
  watchdog_.request_started(request.remote_addr + ":" + std::to_string(request.remote_port));
  // cpp-httplib adds four headers of its own (REMOTE_ADDR...).
  if (request.headers.size() > kMaxHeaders + 4) {
    answer_error(response, {431, "more than " + std::to_string(kMaxHeaders) + " header fields"});
    response.set_header("Connection", "close");
    return httplib::Server::HandlerResponse::Handled;
  }
  if (request.has_header("Content-Length")) {
    const std::string text = request.get_header_value("Content-Length");
    uint64_t length = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), length);
    if (error != std::errc() || end != text.data() + text.size()) {
      answer_error(response, {400, "bad Content-Length '" + text + "'"});
      response.set_header("Connection", "close");
      return httplib::Server::HandlerResponse::Handled;
    }
    // Refused before a byte of the body is read.
    if (length > options_.max_body) {
      answer_error(response, {413, "Content-Length " + text + " is over --max-body " +
                                       std::to_string(options_.max_body) + " bytes"});
      response.set_header("Connection", "close");
      return httplib::Server::HandlerResponse::Handled;
    }
  }
  return httplib::Server::HandlerResponse::Unhandled;
}

void Service::on_error(const httplib::Request& request, httplib::Response& response) const {
  if (!response.body.empty()) return;  // a handler's own answer
  std::string message;
  if (response.status == 404) {
    if (const char* methods = allowed_methods(request.path)) {
      response.status = 405;
      response.set_header("Allow", methods);
      message = request.method + " is not allowed on " + request.path + " (" + methods + ")";
    } else {
      message = "no such path '" + request.path + "'";
    }
  } else {
    message = status_text(response.status);
  }
  response.set_content(error_body(message), "application/json");
}

void Service::after_response(const httplib::Request& request, const httplib::Response& response) {
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - current.start).count();
  metrics_.record(current.endpoint, response.status, seconds);
  watchdog_.request_finished(request.remote_addr + ":" + std::to_string(request.remote_port));
  if (access_log_ != nullptr) {
    std::lock_guard lock(access_log_mutex_);
    std::fprintf(access_log_, "%s %s %s %d %zu %.1fms\n", request.remote_addr.c_str(), request.method.c_str(),
                 dump(json(request.path)).c_str(), response.status, response.body.size(), seconds * 1000);
    std::fflush(access_log_);
  }
  current.endpoint = "other";
  current.start = std::chrono::steady_clock::now();  // for a next request refused before routing
}

void Service::install(httplib::Server& server) {
  using httplib::Request;
  using httplib::Response;
  server.set_payload_max_length(options_.max_body);
  const auto timeout = std::chrono::milliseconds(options_.timeout_ms);
  // An idle keep-alive connection ends before the watchdog would call it slow.
  server.set_keep_alive_timeout(std::max<time_t>(1, std::min<time_t>(5, options_.timeout_ms / 2000)));
  server.set_keep_alive_max_count(1000);
  server.set_read_timeout(std::chrono::duration_cast<std::chrono::seconds>(timeout).count() + 1);
  server.set_write_timeout(std::chrono::duration_cast<std::chrono::seconds>(timeout).count() + 1);
  const size_t connections = options_.connections;
  server.new_task_queue = [connections] { return new httplib::ThreadPool(connections); };

  server.set_pre_routing_handler([this](const Request& q, Response& r) { return before_routing(q, r); });
  server.set_error_handler([this](const Request& q, Response& r) { on_error(q, r); });
  server.set_logger([this](const Request& q, const Response& r) { after_response(q, r); });
  server.set_exception_handler([](const Request&, Response& r, std::exception_ptr error) {
    // Handlers answer their own errors; anything reaching here is a bug or memory running out.
    std::string message = "internal error";
    try {
      std::rethrow_exception(error);
    } catch (const std::bad_alloc&) {
      message = "out of memory";
    } catch (const std::exception& e) {
      message = std::string("internal error: ") + e.what();
    } catch (...) {
    }
    answer(r, message == "out of memory" ? 503 : 500, error_body(message));
  });

  server.Get("/", [](const Request&, Response& r) {
    set_endpoint("/");
    r.set_content(reinterpret_cast<const char*>(kPageHtml), kPageHtmlSize, "text/html; charset=utf-8");
  });
  server.Get("/health/live", [](const Request&, Response& r) {
    set_endpoint("/health/live");
    answer(r, 200, R"({"live":true})");
  });
  server.Get("/health/ready", [this](const Request&, Response& r) {
    set_endpoint("/health/ready");
    const bool is_ready = ready();
    answer(r, is_ready ? 200 : 503, dump(json{{"ready", is_ready}}));
  });
  server.Get("/health", [this](const Request&, Response& r) {
    set_endpoint("/health");
    const double uptime = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
    json pools = json::object();
    for (const auto& pool : pools_) {
      pools[pool->name()] = {{"sessions", pool->sessions()}, {"busy", pool->busy()}, {"waiting", pool->waiting()},
                             {"queue", pool->queue_limit()}};
    }
    answer(r, 200, dump(json{{"live", true},
                             {"ready", ready()},
                             {"uptime_s", uptime},
                             {"requests", metrics_.requests()},
                             {"requests_ok", metrics_.requests_with_status(200)},
                             {"requests_overloaded", metrics_.requests_with_status(503)},
                             {"slow_clients_dropped", watchdog_.dropped()},
                             {"models", pools}}));
  });
  server.Get("/memory", [this](const Request&, Response& r) {
    set_endpoint("/memory");
    answer(r, 200, dump(memory_json()));
  });
  server.Get("/metrics", [this](const Request&, Response& r) {
    set_endpoint("/metrics");
    r.set_content(metrics_text(), "text/plain; version=0.0.4");
  });
  server.Get("/v1/models", [this](const Request&, Response& r) {
    set_endpoint("/v1/models");
    json models = json::array();
    for (const auto& pool : pools_) models.push_back(model_info(*pool));
    answer(r, 200, dump(json{{"models", models}}));
  });
  server.Get("/v1/models/([^/]+)", [this](const Request& q, Response& r) {
    set_endpoint("/v1/models/{name}");
    if (const SessionPool* pool = find(q.matches[1])) {
      answer(r, 200, dump(model_info(*pool)));
    } else {
      answer_error(r, {404, "no model named '" + std::string(q.matches[1]) + "'"});
    }
  });
  server.Post("/predict", [this](const Request& q, Response& r, const httplib::ContentReader& reader) {
    set_endpoint("/predict");
    predict(q, r, reader, first());
  });
  server.Post("/v1/models/([^/]+)/predict",
              [this](const Request& q, Response& r, const httplib::ContentReader& reader) {
                set_endpoint("/v1/models/{name}/predict");
                if (SessionPool* pool = find(q.matches[1])) {
                  predict(q, r, reader, *pool);
                } else {
                  answer_error(r, {404, "no model named '" + std::string(q.matches[1]) + "'"});
                  discard_body(q, reader, r);
                }
              });
  install_open_inference_protocol(*this, server);
}

void Service::start_watchdog(uint16_t port) { watchdog_.start(port, std::chrono::milliseconds(options_.timeout_ms)); }

}  // namespace effcam::serve
