// Reading the JSON of a Keras model config: parsing with a nesting cap, typed fields whose every mismatch is an
// effcam::Error naming the field, and the rule for config integers shared by the reader and the lowering.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace effcam::keras {

// Refuses nesting deeper than 256 levels before parsing (copying and walking a value recurse).
nlohmann::json parse_json(std::string_view text, const std::string& what);

const nlohmann::json* find_field(const nlohmann::json& object, const char* key);  // nullptr if absent
const nlohmann::json& require_object(const nlohmann::json& value, const std::string& what);
const nlohmann::json& require_field(const nlohmann::json& object, const char* key, const std::string& what);
const nlohmann::json& array_field(const nlohmann::json& object, const char* key, const std::string& what);
std::string string_field(const nlohmann::json& object, const char* key, const std::string& what);
bool bool_field(const nlohmann::json& object, const char* key, bool fallback, const std::string& what);

// A config integer (filters, units, kernel_size, strides, pool_size, padding amounts, shapes...) in [min, max], or
// nullopt. Keras writes these from Python ints: of the ~2,800 such fields in the 12 genuine files of ../shared/fixtures
// and the bundled model, none is a float. So 3.0 is refused, as is anything out of range.
std::optional<int64_t> config_int(const nlohmann::json& value, int64_t min, int64_t max);
int64_t positive_int(const nlohmann::json& value, const std::string& what);  // config_int in [1, INT32_MAX]
int64_t positive_int_field(const nlohmann::json& object, const char* key, std::optional<int64_t> fallback,
                           const std::string& what);
// kernel_size: an int or a list of `rank` ints.
std::vector<int64_t> kernel_size_field(const nlohmann::json& config, size_t rank, const std::string& what);

std::string type_name(const nlohmann::json& value);
std::string quote_name(const std::string& text);            // 'text'
std::string shape_text(const std::vector<int64_t>& shape);  // (3,3,*,16)
std::string join(const std::vector<std::string>& items);    // a, b, c
bool starts_with(const std::string& text, const std::string& prefix);

}  // namespace effcam::keras
