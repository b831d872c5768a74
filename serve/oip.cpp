// The Open Inference Protocol (KServe "v2" REST, as Triton speaks it), written from the protocol's text
// (kserve/open-inference-protocol specification/protocol/inference_rest.md and the binary tensor data extension):
// health, server and model metadata, model ready, and infer with one image input:
// - UINT8 [1,H,W,C] or [H,W,C] raw pixels (C = 1, 3 or 4), in "data" or as binary tensor data;
// - BYTES [1] holding an encoded image, base64 in "data" (as KServe's image examples send it) or as binary data
//   (a 4-byte little-endian length, then the bytes).
// Outputs: "probabilities" FP32 [1,classes] and, when the request's parameters ask for one, "cam" FP32 [h,w].
// Errors are {"error": "..."} with 400 (bad request or tensor), 404 (unknown model), 503 (overloaded).
#include <cstring>
#include <limits>

#include "serve/service.h"

namespace effcam::serve {

using nlohmann::json;

namespace {

constexpr const char* kInputName = "image";

[[noreturn]] void bad(const std::string& message) { throw HttpError{400, message}; }

std::string base64_decode(const std::string& text) {
  static const auto table = [] {
    std::array<int8_t, 256> t;
    t.fill(-1);
    const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int i = 0; i < 64; ++i) t[static_cast<uint8_t>(alphabet[i])] = static_cast<int8_t>(i);
    return t;
  }();
  size_t length = text.size();
  while (length > 0 && text[length - 1] == '=') --length;
  if (text.size() % 4 != 0 || text.size() - length > 2) bad("BYTES data is not valid base64 (length or padding)");
  std::string out;
  out.reserve(length * 3 / 4);
  uint32_t bits = 0;
  int count = 0;
  for (size_t i = 0; i < length; ++i) {
    const int8_t value = table[static_cast<uint8_t>(text[i])];
    if (value < 0) bad("BYTES data is not valid base64 (character " + std::to_string(i) + ")");
    bits = (bits << 6) | static_cast<uint32_t>(value);
    if (++count == 4) {
      out.push_back(static_cast<char>(bits >> 16));
      out.push_back(static_cast<char>(bits >> 8));
      out.push_back(static_cast<char>(bits));
      bits = 0;
      count = 0;
    }
  }
  if (count == 2) out.push_back(static_cast<char>(bits >> 4));
  if (count == 3) {
    out.push_back(static_cast<char>(bits >> 10));
    out.push_back(static_cast<char>(bits >> 2));
  }
  return out;
}

// Appends a tensor's "data" (flat or nested row-major) as bytes 0..255.
void flatten_uint8(const json& data, std::string& out, size_t limit) {
  if (data.is_array()) {
    for (const json& item : data) flatten_uint8(item, out, limit);
    return;
  }
  if (!data.is_number_unsigned() || data.get<uint64_t>() > 255) bad("UINT8 data holds a value that is not 0..255");
  if (out.size() >= limit) bad("UINT8 data holds more elements than its shape");
  out.push_back(static_cast<char>(data.get<uint64_t>()));
}

// The request's "parameters" as PredictOptions (top_k, cam, cam_layer, cam_score, cam_class).
PredictOptions parameters_to_options(const json& request) {
  PredictOptions options;
  if (!request.contains("parameters")) return options;
  const json& parameters = request["parameters"];
  if (!parameters.is_object()) bad("\"parameters\" is not an object");
  try {
    for (const auto& [key, value] : parameters.items()) {
      if (key == "cam" && value.is_string()) {
        options.cam = parse_cam_method(value.get<std::string>());
      } else if (key == "cam_layer" && value.is_string()) {
        options.cam_layer = value.get<std::string>();
      } else if (key == "cam_score" && value.is_string()) {
        options.cam_score = parse_cam_score(value.get<std::string>());
      } else if (key == "cam_class" && value.is_number_unsigned()) {
        options.cam_class = static_cast<uint32_t>(std::min<uint64_t>(value.get<uint64_t>(), UINT32_MAX));
      } else if (key == "top_k" && value.is_number_unsigned() && value.get<uint64_t>() >= 1) {
        options.top_k = static_cast<uint32_t>(std::min<uint64_t>(value.get<uint64_t>(), 1'000'000));
      } else if (key == "binary_data_output" || key == "binary_data") {
        // Outputs are always JSON here (the extension lets a server answer in JSON).
      } else {
        bad("parameter \"" + key + "\" is unknown or of the wrong type (cam, cam_layer, cam_score, cam_class, top_k)");
      }
    }
  } catch (const Error& e) {
    bad(e.what());
  }
  return options;
}

std::vector<uint64_t> tensor_shape(const json& input) {
  if (!input.contains("shape") || !input["shape"].is_array()) bad("input \"shape\" is missing or not an array");
  std::vector<uint64_t> shape;
  for (const json& dim : input["shape"]) {
    if (!dim.is_number_unsigned()) bad("input \"shape\" holds a dimension that is not a whole number");
    shape.push_back(dim.get<uint64_t>());
  }
  return shape;
}

// The input tensor as an image: fills `storage` (which the ImageSource points into).
ImageSource read_input(const json& input, const std::string& binary, std::string& storage, uint32_t max_channels,
                       uint64_t max_bytes) {
  if (!input.is_object()) bad("an input is not an object");
  if (!input.contains("name") || !input["name"].is_string()) bad("input \"name\" is missing");
  if (!input.contains("datatype") || !input["datatype"].is_string()) bad("input \"datatype\" is missing");
  const std::string datatype = input["datatype"].get<std::string>();
  const std::vector<uint64_t> shape = tensor_shape(input);
  const json* binary_size = nullptr;
  if (input.contains("parameters") && input["parameters"].is_object() &&
      input["parameters"].contains("binary_data_size")) {
    binary_size = &input["parameters"]["binary_data_size"];
    if (!binary_size->is_number_unsigned() || binary_size->get<uint64_t>() != binary.size()) {
      bad("binary_data_size does not match the binary data after the JSON header (" + std::to_string(binary.size()) +
          " bytes)");
    }
  } else if (!binary.empty()) {
    bad("binary data follows the JSON header but the input has no binary_data_size");
  }
  if (binary_size == nullptr && !input.contains("data")) bad("input \"data\" is missing");

  if (datatype == "BYTES") {
    if (shape != std::vector<uint64_t>{1}) bad("a BYTES input must have shape [1] (one encoded image)");
    if (binary_size != nullptr) {
      uint32_t length = 0;
      if (binary.size() < 4) bad("BYTES binary data is shorter than its 4-byte length");
      for (int i = 3; i >= 0; --i) length = (length << 8) | static_cast<uint8_t>(binary[static_cast<size_t>(i)]);
      if (length != binary.size() - 4) bad("BYTES binary data's length prefix does not match its size");
      storage = binary.substr(4);
    } else {
      const json& data = input["data"];
      const json& element = data.is_array() && data.size() == 1 ? data[0] : data;
      if (!element.is_string()) bad("BYTES data must hold one base64 string");
      storage = base64_decode(element.get<std::string>());
    }
    if (storage.empty()) bad("BYTES data is empty");
    return ImageSource::encoded({reinterpret_cast<const uint8_t*>(storage.data()), storage.size()}, "input");
  }
  if (datatype == "UINT8") {
    std::vector<uint64_t> hwc = shape;
    if (hwc.size() == 4 && hwc[0] == 1) hwc.erase(hwc.begin());
    if (hwc.size() != 3) bad("a UINT8 input must have shape [1,H,W,C] or [H,W,C]");
    const uint64_t height = hwc[0], width = hwc[1], channels = hwc[2];
    if (height == 0 || width == 0 || height > 65535 || width > 65535 || !(channels == 1 || channels == 3 ||
                                                                          channels == 4)) {
      bad("a UINT8 input must have H and W from 1 to 65535 and C of 1, 3 or 4");
    }
    if (channels == 1 && max_channels == 3) bad("this model takes RGB (C = 3 or 4), not C = 1");
    const uint64_t count = height * width * channels;
    if (count > max_bytes) bad("the UINT8 tensor is over --max-body bytes");
    if (binary_size != nullptr) {
      if (binary.size() != count) bad("UINT8 binary data is not H x W x C bytes");
      storage = binary;
    } else {
      storage.reserve(count);
      flatten_uint8(input["data"], storage, count);
      if (storage.size() != count) bad("UINT8 data holds fewer elements than its shape");
    }
    return ImageSource::pixels({reinterpret_cast<const uint8_t*>(storage.data()), storage.size()},
                               static_cast<uint32_t>(width), static_cast<uint32_t>(height),
                               static_cast<uint32_t>(channels));
  }
  bad("input datatype \"" + datatype + "\" is not supported (UINT8 pixels or BYTES holding an encoded image)");
}

json tensor(const char* name, std::vector<uint64_t> shape, const std::vector<float>& values) {
  return {{"name", name}, {"datatype", "FP32"}, {"shape", std::move(shape)}, {"data", values}};
}

json model_metadata(const SessionPool& pool) {
  const Model& model = pool.model();
  const int64_t channels = model.input_channels();
  json outputs = json::array({{{"name", "probabilities"}, {"datatype", "FP32"},
                               {"shape", {1, static_cast<int64_t>(model.classes())}}}});
  if (!pool.planned().cam_layers().empty()) {
    outputs.push_back({{"name", "cam"}, {"datatype", "FP32"}, {"shape", {-1, -1}}});
  }
  // Any image size is resized to the model's input; BYTES [1] (an encoded image) is accepted too.
  return {{"name", pool.name()},
          {"platform", "effcam"},
          {"inputs", json::array({{{"name", kInputName}, {"datatype", "UINT8"}, {"shape", {1, -1, -1, channels}}}})},
          {"outputs", outputs}};
}

std::string dump(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace

void install_open_inference_protocol(Service& service, httplib::Server& server) {
  using httplib::Request;
  using httplib::Response;
  server.Get("/v2", [](const Request&, Response& r) {
    Service::set_endpoint("/v2");
    Service::answer(r, 200, dump(json{{"name", "effcam-serve"}, {"version", version()},
                                      {"extensions", json::array({"binary_tensor_data"})}}));
  });
  server.Get("/v2/health/live", [](const Request&, Response& r) {
    Service::set_endpoint("/v2/health/live");
    Service::answer(r, 200, R"({"live":true})");
  });
  server.Get("/v2/health/ready", [&service](const Request&, Response& r) {
    Service::set_endpoint("/v2/health/ready");
    const bool ready = service.ready();
    Service::answer(r, ready ? 200 : 503, dump(json{{"ready", ready}}));
  });
  auto model_or_404 = [&service](const Request& q, Response& r) -> SessionPool* {
    SessionPool* pool = service.find(q.matches[1]);
    if (pool == nullptr) Service::answer_error(r, {404, "no model named '" + std::string(q.matches[1]) + "'"});
    return pool;
  };
  server.Get("/v2/models/([^/]+)(?:/versions/[^/]+)?", [model_or_404](const Request& q, Response& r) {
    Service::set_endpoint("/v2/models/{name}");
    if (const SessionPool* pool = model_or_404(q, r)) Service::answer(r, 200, dump(model_metadata(*pool)));
  });
  server.Get("/v2/models/([^/]+)(?:/versions/[^/]+)?/ready", [model_or_404](const Request& q, Response& r) {
    Service::set_endpoint("/v2/models/{name}/ready");
    if (const SessionPool* pool = model_or_404(q, r)) {
      const bool ready = !pool->full();
      Service::answer(r, ready ? 200 : 503, dump(json{{"name", pool->name()}, {"ready", ready}}));
    }
  });
  server.Post("/v2/models/([^/]+)(?:/versions/[^/]+)?/infer", [&service, model_or_404](
                                                                   const Request& q, Response& r,
                                                                   const httplib::ContentReader& reader) {
    Service::set_endpoint("/v2/models/{name}/infer");
    SessionPool* pool = model_or_404(q, r);
    if (pool == nullptr) {
      service.discard_body(q, reader, r);
      return;
    }
    bool body_read = false;  // a request refused before reading its body has it read and dropped
    try {
      const std::string type = q.get_header_value("Content-Type");
      if (!type.empty() && type.rfind("application/json", 0) != 0 && type.rfind("application/octet-stream", 0) != 0) {
        throw HttpError{415, "Content-Type '" + type + "' is not application/json"};
      }
      std::string body, storage, id;
      bool has_id = false;
      std::vector<std::string> wanted;  // requested outputs; empty: all
      const Prediction prediction = service.run(*pool, [&] {
        body_read = true;
        body = service.read_body(q, reader, "");
        size_t json_size = body.size();
        if (q.has_header("Inference-Header-Content-Length")) {
          const std::string text = q.get_header_value("Inference-Header-Content-Length");
          char* end = nullptr;
          const unsigned long long value = std::strtoull(text.c_str(), &end, 10);
          if (text.empty() || *end != '\0' || value > body.size()) {
            bad("Inference-Header-Content-Length '" + text + "' is not a size within the body");
          }
          json_size = value;
        }
        const json request = json::parse(body.begin(), body.begin() + static_cast<std::ptrdiff_t>(json_size),
                                         nullptr, false);
        if (request.is_discarded() || !request.is_object()) bad("the body is not a JSON object");
        if (request.contains("id")) {
          if (!request["id"].is_string()) bad("\"id\" is not a string");
          id = request["id"].get<std::string>();
          has_id = true;
        }
        if (!request.contains("inputs") || !request["inputs"].is_array() || request["inputs"].size() != 1) {
          bad("\"inputs\" must hold exactly one tensor (the image)");
        }
        if (request.contains("outputs")) {
          if (!request["outputs"].is_array()) bad("\"outputs\" is not an array");
          for (const json& output : request["outputs"]) {
            if (!output.is_object() || !output.contains("name") || !output["name"].is_string()) {
              bad("an output has no \"name\"");
            }
            const std::string name = output["name"].get<std::string>();
            if (name != "probabilities" && name != "cam") bad("unknown output \"" + name + "\" (probabilities, cam)");
            wanted.push_back(name);
          }
        }
        PredictOptions options = parameters_to_options(request);
        service.check_cam(*pool, options);
        const std::string binary = body.substr(json_size);
        ImageSource image = read_input(request["inputs"][0], binary, storage, pool->model().input_channels(),
                                       UINT64_MAX);
        return std::make_pair(image, options);
      });
      auto wants = [&](const char* name) {
        return wanted.empty() || std::find(wanted.begin(), wanted.end(), name) != wanted.end();
      };
      json outputs = json::array();
      if (wants("probabilities")) {
        outputs.push_back(tensor("probabilities", {1, prediction.probabilities.size()}, prediction.probabilities));
      }
      if (prediction.cam && wants("cam")) {
        outputs.push_back(tensor("cam", {prediction.cam->height, prediction.cam->width}, prediction.cam->values));
      }
      json answer = {{"model_name", pool->name()}, {"outputs", outputs}};
      if (has_id) answer["id"] = id;
      Service::answer(r, 200, dump(answer));
    } catch (const HttpError& error) {
      Service::answer_error(r, error);
      if (!body_read) service.discard_body(q, reader, r);
    }
  });
}

}  // namespace effcam::serve
