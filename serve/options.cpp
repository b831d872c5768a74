#include "serve/options.h"

#include <charconv>
#include <filesystem>
#include <limits>
#include <thread>

namespace effcam::serve {

const char* const kUsage =
    "usage: effcam-serve --model [NAME=]FILE.effcam [--model ...] [--host 127.0.0.1] [--port 8080]\n"
    "         [--sessions N] [--threads-per-session T] [--queue Q] [--max-body BYTES] [--timeout-ms MS]\n"
    "         [--workers P] [--connections C] [--max-pixels N] [--max-image-mib MIB] [--memory-budget BYTES]\n"
    "         [--cam-default METHOD|none] [--cam-layers L1,L2,...] [--access-log FILE|-]\n";

namespace {

uint64_t parse_number(const std::string& flag, const std::string& text, uint64_t min, uint64_t max) {
  uint64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || value < min || value > max) {
    throw Error(flag + " wants a whole number from " + std::to_string(min) + " to " + std::to_string(max) +
                ", got '" + text + "'");
  }
  return value;
}

std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    if (comma > start) parts.push_back(text.substr(start, comma - start));
    start = comma + 1;
  }
  return parts;
}

ModelSpec parse_model(const std::string& text) {
  ModelSpec spec;
  const size_t equals = text.find('=');
  spec.path = equals == std::string::npos ? text : text.substr(equals + 1);
  spec.name = equals == std::string::npos ? std::filesystem::path(text).stem().string() : text.substr(0, equals);
  if (spec.path.empty()) throw Error("--model '" + text + "' names no file");
  // The name is a URL path segment: keep it to characters that need no escaping.
  if (spec.name.empty() || spec.name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                       "0123456789._-") != std::string::npos) {
    throw Error("--model name '" + spec.name + "' must be letters, digits, '.', '_' or '-'");
  }
  return spec;
}

}  // namespace

ServeOptions parse_options(int argc, char** argv) {
  ServeOptions options;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw Error(flag + " needs a value");
      return argv[++i];
    };
    if (flag == "--model") {
      options.models.push_back(parse_model(value()));
    } else if (flag == "--host") {
      options.host = value();
    } else if (flag == "--port") {
      options.port = static_cast<uint16_t>(parse_number(flag, value(), 0, 65535));
    } else if (flag == "--sessions") {
      options.sessions = static_cast<uint32_t>(parse_number(flag, value(), 1, 256));
    } else if (flag == "--threads-per-session") {
      options.threads_per_session = static_cast<uint32_t>(parse_number(flag, value(), 1, 256));
    } else if (flag == "--queue") {
      options.queue = static_cast<uint32_t>(parse_number(flag, value(), 0, 100000));
      options.queue_given = true;
    } else if (flag == "--max-body") {
      options.max_body = parse_number(flag, value(), 1, uint64_t{1} << 32);
    } else if (flag == "--timeout-ms") {
      options.timeout_ms = static_cast<uint32_t>(parse_number(flag, value(), 1, 3'600'000));
    } else if (flag == "--workers") {
      options.workers = static_cast<uint32_t>(parse_number(flag, value(), 1, 256));
    } else if (flag == "--connections") {
      options.connections = static_cast<uint32_t>(parse_number(flag, value(), 2, 4096));
    } else if (flag == "--max-pixels") {
      options.max_pixels = parse_number(flag, value(), 1, 50'000'000);
    } else if (flag == "--max-image-mib") {
      options.max_image_bytes = parse_number(flag, value(), 1, 1 << 20) << 20;
    } else if (flag == "--memory-budget") {
      options.memory_budget_bytes = parse_byte_size(value());
      if (options.memory_budget_bytes == 0) throw Error("--memory-budget must be more than 0 bytes");
    } else if (flag == "--cam-default") {
      options.cam_default = parse_cam_method(value());
    } else if (flag == "--cam-layers") {
      options.cam_layers = split_commas(value());
    } else if (flag == "--access-log") {
      options.access_log = value();
    } else {
      throw Error("unknown argument '" + flag + "'");
    }
  }
  if (options.models.empty()) throw Error("no --model given");
  for (size_t i = 0; i < options.models.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (options.models[i].name == options.models[j].name) {
        throw Error("two models are named '" + options.models[i].name + "' (use NAME=FILE)");
      }
    }
  }
  if (options.sessions == 0) options.sessions = std::max(1u, std::thread::hardware_concurrency());
  if (!options.queue_given) options.queue = 2 * options.sessions;
  return options;
}

}  // namespace effcam::serve
