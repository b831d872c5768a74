#include "converter/keras_json.h"

#include "effcam/error.hpp"

namespace effcam::keras {

using json = nlohmann::json;

constexpr int kMaxJsonDepth = 256;

std::string type_name(const json& value) { return value.type_name(); }

std::string quote_name(const std::string& text) { return "'" + text + "'"; }

json parse_json(std::string_view text, const std::string& what) {
  // nlohmann parses iteratively, but copying and walking a value recurse: refuse absurd nesting first.
  int depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth) {
        throw Error(what + " nests deeper than " + std::to_string(kMaxJsonDepth) + " levels");
      }
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    throw Error(what + " is not valid JSON (" + e.what() + ")");
  }
}

const json* find_field(const json& object, const char* key) {
  if (!object.is_object()) return nullptr;
  auto it = object.find(key);
  if (it == object.end()) return nullptr;
  return &*it;
}

const json& require_object(const json& value, const std::string& what) {
  if (!value.is_object()) throw Error(what + " must be a JSON object, not " + type_name(value));
  return value;
}

const json& require_field(const json& object, const char* key, const std::string& what) {
  require_object(object, what);
  const json* field = find_field(object, key);
  if (field == nullptr) throw Error(what + " has no " + quote_name(key) + " field");
  return *field;
}

const json& array_field(const json& object, const char* key, const std::string& what) {
  const json& field = require_field(object, key, what);
  if (!field.is_array()) {
    throw Error(what + ": field " + quote_name(key) + " must be a list, not " + type_name(field));
  }
  return field;
}

std::string string_field(const json& object, const char* key, const std::string& what) {
  const json& field = require_field(object, key, what);
  if (!field.is_string()) {
    throw Error(what + ": field " + quote_name(key) + " must be a string, not " + type_name(field));
  }
  return field.get<std::string>();
}

bool bool_field(const json& object, const char* key, bool fallback, const std::string& what) {
  const json* field = find_field(object, key);
  if (field == nullptr || field->is_null()) return fallback;
  if (!field->is_boolean()) {
    throw Error(what + ": field " + quote_name(key) + " must be true or false, not " + type_name(*field));
  }
  return field->get<bool>();
}

std::optional<int64_t> config_int(const json& value, int64_t min, int64_t max) {
  if (value.is_number_unsigned()) {  // may exceed int64_t
    const uint64_t v = value.get<uint64_t>();
    if (max < 0 || v > static_cast<uint64_t>(max) || static_cast<int64_t>(v) < min) return std::nullopt;
    return static_cast<int64_t>(v);
  }
  if (!value.is_number_integer()) return std::nullopt;
  const int64_t v = value.get<int64_t>();
  if (v < min || v > max) return std::nullopt;
  return v;
}

int64_t positive_int(const json& value, const std::string& what) {
  if (const std::optional<int64_t> v = config_int(value, 1, INT32_MAX)) return *v;
  throw Error(what + " must be a positive integer, not " +
              (value.is_number() ? value.dump() : type_name(value)));
}

int64_t positive_int_field(const json& object, const char* key, std::optional<int64_t> fallback,
                           const std::string& what) {
  const json* field = find_field(object, key);
  if (field == nullptr || field->is_null()) {
    if (fallback) return *fallback;
    throw Error(what + " has no " + quote_name(key) + " field");
  }
  return positive_int(*field, what + ": field " + quote_name(key));
}

// kernel_size: an int or a list of `rank` ints.
std::vector<int64_t> kernel_size_field(const json& config, size_t rank, const std::string& what) {
  const json& field = require_field(config, "kernel_size", what);
  const std::string field_what = what + ": field 'kernel_size'";
  if (field.is_number()) return std::vector<int64_t>(rank, positive_int(field, field_what));
  if (!field.is_array() || field.size() != rank) {
    throw Error(field_what + " must be an integer or a list of " + std::to_string(rank) + " integers");
  }
  std::vector<int64_t> sizes;
  for (const json& item : field) sizes.push_back(positive_int(item, field_what));
  return sizes;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string text = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) text += ",";
    text += shape[i] < 0 ? std::string("*") : std::to_string(shape[i]);
  }
  if (shape.size() == 1) text += ",";
  return text + ")";
}

bool starts_with(const std::string& text, const std::string& prefix) {
  return text.size() >= prefix.size() && text.compare(0, prefix.size(), prefix) == 0;
}

std::string join(const std::vector<std::string>& items) {
  std::string text;
  for (size_t i = 0; i < items.size(); ++i) text += (i ? ", " : "") + items[i];
  return text;
}

}  // namespace effcam::keras
