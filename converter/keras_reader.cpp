// Reads a Keras model (Keras 3 `.keras` zip or legacy `.h5`) into one flat graph with fp32 weights.
// The layouts are described in ../shared/docs/keras-format.md (sections 1-3); section numbers below refer
// to that document.
#include <array>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "converter/h5_file.h"
#include "converter/keras_archive.h"
#include "converter/keras_graph.h"
#include "converter/keras_json.h"
#include "converter/keras_model.h"
#include "converter/keras_weights.h"
#include "effcam/error.hpp"

namespace effcam::keras {

namespace {

using json = nlohmann::json;

constexpr uint64_t kMaxJsonBytes = uint64_t{64} << 20;      // config.json / metadata.json
constexpr uint64_t kMaxWeightsBytes = uint64_t{4} << 30;    // model.weights.h5

bool is_keras2(const std::string& version) { return starts_with(version, "2.") || starts_with(version, "1."); }

std::string bytes_to_string(const std::vector<uint8_t>& bytes) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

Model read_keras_zip(const std::string& path) {
  ZipArchive zip(path);
  if (!zip.has("config.json")) {
    throw Error(path + ": the zip archive has no config.json, so it is not a Keras .keras file");
  }
  std::string keras_version;
  if (zip.has("metadata.json")) {
    const json metadata = parse_json(bytes_to_string(zip.read("metadata.json", kMaxJsonBytes)), path + ": metadata.json");
    if (const json* version = find_field(metadata, "keras_version"); version && version->is_string()) {
      keras_version = version->get<std::string>();
    }
  }
  const json top = parse_json(bytes_to_string(zip.read("config.json", kMaxJsonBytes)), path + ": config.json");
  require_object(top, path + ": config.json");
  if (!zip.has("model.weights.h5")) {
    if (zip.has("model.weights.npz")) throw Error(path + ": weights stored as model.weights.npz are not supported");
    for (const std::string& name : zip.member_names()) {
      if (name.size() > 13 && name.compare(name.size() - 13, 13, ".weights.json") == 0) {
        throw Error(path + ": sharded weights (" + name + ") are not supported; save without max_shard_size");
      }
    }
    throw Error(path + ": the archive has no model.weights.h5");
  }
  const h5::File weights = h5::File::open_image(zip.read("model.weights.h5", kMaxWeightsBytes), "model.weights.h5");
  std::string container;  // the group holding the top model's layer groups (§0)
  if (weights.is_group("/_layer_checkpoint_dependencies")) container = "/_layer_checkpoint_dependencies";
  else if (weights.is_group("/layers")) container = "/layers";
  FlatGraph graph = flatten(top, Format::KerasZip, is_keras2(keras_version), weights, container);
  Model model = attach_weights(std::move(graph), Format::KerasZip, weights);
  model.source_format = "keras-zip";
  model.keras_version = keras_version;
  model.name = model_name(top);
  return model;
}

Model read_legacy_h5(const std::string& path) {
  const h5::File file = h5::File::open_path(path, "");  // read_model() prefixes messages with the path
  const std::optional<std::string> model_config = file.string_attr("/", "model_config");
  if (!model_config) {
    if (file.string_list_attr("/", "layer_names") || file.string_list_attr("/model_weights", "layer_names")) {
      throw Error(path + ": a weights-only HDF5 file (no model_config attribute); save the full model with "
                         "model.save()");
    }
    throw Error(path + ": the HDF5 file has no model_config attribute, so it is not a Keras full-model .h5 file");
  }
  const std::string keras_version = file.string_attr("/", "keras_version").value_or("");
  const json top = parse_json(*model_config, path + ": model_config");
  require_object(top, path + ": model_config");
  if (!file.is_group("/model_weights")) throw Error(path + ": the HDF5 file has no model_weights group");
  FlatGraph graph = flatten(top, Format::LegacyH5, is_keras2(keras_version), file, "");
  Model model = attach_weights(std::move(graph), Format::LegacyH5, file);
  model.source_format = "legacy-h5";
  model.keras_version = keras_version;
  model.name = model_name(top);
  return model;
}

Model read_any(const std::string& path) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) throw Error(path + ": no such file");
  if (!std::filesystem::is_regular_file(status)) throw Error(path + ": not a regular file");
  const uintmax_t size = std::filesystem::file_size(path, ec);
  if (ec) throw Error(path + ": cannot read the file size (" + ec.message() + ")");
  if (size == 0) throw Error(path + ": the file is empty");
  std::array<char, 8> magic{};
  {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(path + ": cannot open the file");
    in.read(magic.data(), magic.size());
  }
  static constexpr std::array<char, 8> kHdf5Signature{'\x89', 'H', 'D', 'F', '\r', '\n', '\x1a', '\n'};
  const bool zip = size >= 4 && magic[0] == 'P' && magic[1] == 'K' &&
                   ((magic[2] == 3 && magic[3] == 4) || (magic[2] == 5 && magic[3] == 6));
  if (zip) return read_keras_zip(path);
  if (size >= 8 && magic == kHdf5Signature) return read_legacy_h5(path);
  if (H5Fis_hdf5(path.c_str()) > 0) return read_legacy_h5(path);  // HDF5 behind a user block
  throw Error(path + ": neither a Keras .keras archive (zip) nor a Keras .h5 file (HDF5)");
}

}  // namespace

Model read_model(const std::string& path) {
  h5::QuietErrors quiet;
  try {
    return read_any(path);
  } catch (const Error& e) {
    // Every message names the file once.
    const std::string message = e.what();
    if (starts_with(message, path + ":")) throw;
    throw Error(path + ": " + message);
  } catch (const std::bad_alloc&) {
    throw;
  } catch (const std::exception& e) {
    // nlohmann::json and the standard library must not escape as anything but effcam::Error.
    throw Error(path + ": unreadable model (" + e.what() + ")");
  }
}

}  // namespace effcam::keras