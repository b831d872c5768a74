// Test-side writers for small synthetic Keras files: HDF5 files through libhdf5 (datasets of any float
// width, bfloat16, string attributes in every layout h5py produces) and `.keras` zips through libzip, plus
// JSON builders for Keras 3 / Keras 2 layer entries. Header-only; tests link effcam_converter, which brings
// libhdf5, libzip and nlohmann_json.
#pragma once

#include <hdf5.h>
#include <zip.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace effcam::test {

using json = nlohmann::json;

inline std::vector<uint8_t> read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline void write_bytes(const std::filesystem::path& path, const void* data, size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

inline void write_text(const std::filesystem::path& path, const std::string& text) {
  write_bytes(path, text.data(), text.size());
}

// fp32 -> IEEE half / bfloat16 bits for values exactly representable in them (test data are chosen so).
inline uint16_t exact_half_bits(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  const uint32_t sign = (bits >> 16) & 0x8000u;
  if ((bits & 0x7fffffffu) == 0) return static_cast<uint16_t>(sign);
  const int exponent = static_cast<int>((bits >> 23) & 0xff) - 127 + 15;
  if (exponent <= 0 || exponent >= 31) throw std::runtime_error("value outside the exact fp16 test range");
  return static_cast<uint16_t>(sign | (static_cast<uint32_t>(exponent) << 10) | ((bits >> 13) & 0x3ffu));
}

inline uint16_t exact_bfloat16_bits(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  return static_cast<uint16_t>(bits >> 16);
}

// Values exactly representable in fp16 and bf16: multiples of 1/8 in [-2, 2).
inline std::vector<float> test_values(size_t count, int seed) {
  std::vector<float> values(count);
  for (size_t i = 0; i < count; ++i) {
    values[i] = static_cast<float>(static_cast<int>((i * 7 + static_cast<size_t>(seed) * 13) % 32) - 16) / 8.0f;
  }
  return values;
}

inline size_t element_count(const std::vector<hsize_t>& shape) {
  size_t n = 1;
  for (hsize_t d : shape) n *= static_cast<size_t>(d);
  return n;
}

enum class Dtype { F32, F16, F64, BF16 };

// Writes an HDF5 file the way h5py lays Keras files out.
class H5Builder {
 public:
  explicit H5Builder(const std::filesystem::path& path) : path_(path) {
    file_ = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file_ < 0) throw std::runtime_error("H5Fcreate failed for " + path.string());
    lcpl_ = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl_, 1);
  }
  ~H5Builder() { close(); }
  H5Builder(const H5Builder&) = delete;
  H5Builder& operator=(const H5Builder&) = delete;

  void close() {
    if (lcpl_ >= 0) H5Pclose(lcpl_);
    if (file_ >= 0) H5Fclose(file_);
    lcpl_ = file_ = -1;
  }
  // Closes the file and returns its bytes (for a zip member).
  std::vector<uint8_t> finish() {
    close();
    return read_bytes(path_);
  }

  void group(const std::string& path) {
    if (H5Lexists_safe(path)) return;
    hid_t g = H5Gcreate2(file_, path.c_str(), lcpl_, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) throw std::runtime_error("H5Gcreate2 failed for " + path);
    H5Gclose(g);
  }

  // A dataset holding `values` (fp32) stored as `dtype`.
  void dataset(const std::string& path, const std::vector<hsize_t>& shape, const std::vector<float>& values,
               Dtype dtype = Dtype::F32) {
    if (values.size() != element_count(shape)) throw std::runtime_error("value count mismatch for " + path);
    hid_t space = shape.empty() ? H5Screate(H5S_SCALAR)
                                : H5Screate_simple(static_cast<int>(shape.size()), shape.data(), nullptr);
    hid_t type = -1;
    std::vector<uint8_t> raw;
    hid_t memtype = -1;
    switch (dtype) {
      case Dtype::F32:
        type = H5Tcopy(H5T_IEEE_F32LE);
        memtype = H5Tcopy(H5T_NATIVE_FLOAT);
        raw.assign(reinterpret_cast<const uint8_t*>(values.data()),
                   reinterpret_cast<const uint8_t*>(values.data()) + values.size() * 4);
        break;
      case Dtype::F64: {
        type = H5Tcopy(H5T_IEEE_F64LE);
        memtype = H5Tcopy(H5T_NATIVE_DOUBLE);
        std::vector<double> d(values.begin(), values.end());
        raw.assign(reinterpret_cast<const uint8_t*>(d.data()), reinterpret_cast<const uint8_t*>(d.data()) + d.size() * 8);
        break;
      }
      case Dtype::F16: {
        // h5py's float16: IEEE F32LE reshaped to 1-5-10 bits.
        type = H5Tcopy(H5T_IEEE_F32LE);
        H5Tset_fields(type, 15, 10, 5, 0, 10);
        H5Tset_size(type, 2);
        H5Tset_ebias(type, 15);
        memtype = H5Tcopy(type);
        std::vector<uint16_t> h;
        for (float v : values) h.push_back(exact_half_bits(v));
        raw.assign(reinterpret_cast<const uint8_t*>(h.data()), reinterpret_cast<const uint8_t*>(h.data()) + h.size() * 2);
        break;
      }
      case Dtype::BF16: {
        type = H5Tcopy(H5T_STD_U16LE);
        memtype = H5Tcopy(H5T_NATIVE_UINT16);
        std::vector<uint16_t> h;
        for (float v : values) h.push_back(exact_bfloat16_bits(v));
        raw.assign(reinterpret_cast<const uint8_t*>(h.data()), reinterpret_cast<const uint8_t*>(h.data()) + h.size() * 2);
        break;
      }
    }
    hid_t ds = H5Dcreate2(file_, path.c_str(), type, space, lcpl_, H5P_DEFAULT, H5P_DEFAULT);
    if (ds < 0) throw std::runtime_error("H5Dcreate2 failed for " + path);
    if (!raw.empty() && H5Dwrite(ds, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw.data()) < 0) {
      throw std::runtime_error("H5Dwrite failed for " + path);
    }
    H5Dclose(ds);
    H5Tclose(memtype);
    H5Tclose(type);
    H5Sclose(space);
    if (dtype == Dtype::BF16) string_attr(path, "dtype", "bfloat16");
  }

  // A chunked dataset with enormous declared dimensions and no data written.
  bool huge_dataset(const std::string& path, const std::vector<hsize_t>& dims) {
    hid_t space = H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    std::vector<hsize_t> chunk(dims.size(), 1);
    H5Pset_chunk(dcpl, static_cast<int>(chunk.size()), chunk.data());
    hid_t ds = H5Dcreate2(file_, path.c_str(), H5T_IEEE_F32LE, space, lcpl_, dcpl, H5P_DEFAULT);
    const bool ok = ds >= 0;
    if (ok) H5Dclose(ds);
    H5Pclose(dcpl);
    H5Sclose(space);
    return ok;
  }

  // A scalar string attribute (variable-length UTF-8 like h5py's str, or fixed-length bytes).
  void string_attr(const std::string& object, const std::string& name, const std::string& value,
                   bool variable = true) {
    hid_t obj = H5Oopen(file_, object.c_str(), H5P_DEFAULT);
    if (obj < 0) throw std::runtime_error("H5Oopen failed for " + object);
    hid_t type = H5Tcopy(H5T_C_S1);
    hid_t space = H5Screate(H5S_SCALAR);
    if (variable) {
      H5Tset_size(type, H5T_VARIABLE);
      H5Tset_cset(type, H5T_CSET_UTF8);
    } else {
      H5Tset_size(type, value.empty() ? 1 : value.size());
      H5Tset_strpad(type, H5T_STR_NULLPAD);
    }
    hid_t attr = H5Acreate2(obj, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (attr < 0) throw std::runtime_error("H5Acreate2 failed for " + object + " " + name);
    if (variable) {
      const char* p = value.c_str();
      H5Awrite(attr, type, &p);
    } else {
      std::string padded = value.empty() ? std::string(1, '\0') : value;
      H5Awrite(attr, type, padded.data());
    }
    H5Aclose(attr);
    H5Sclose(space);
    H5Tclose(type);
    H5Oclose(obj);
  }

  // A list of strings: variable-length, fixed-length (numpy "S" arrays), or, when empty, the empty
  // float64 array h5py writes for [].
  void string_list_attr(const std::string& object, const std::string& name, const std::vector<std::string>& values,
                        bool variable) {
    hid_t obj = H5Oopen(file_, object.c_str(), H5P_DEFAULT);
    if (obj < 0) throw std::runtime_error("H5Oopen failed for " + object);
    const hsize_t n = values.size();
    hid_t space = H5Screate_simple(1, &n, nullptr);
    if (values.empty()) {
      hid_t attr = H5Acreate2(obj, name.c_str(), H5T_IEEE_F64LE, space, H5P_DEFAULT, H5P_DEFAULT);
      H5Aclose(attr);
    } else if (variable) {
      hid_t type = H5Tcopy(H5T_C_S1);
      H5Tset_size(type, H5T_VARIABLE);
      std::vector<const char*> pointers;
      for (const std::string& v : values) pointers.push_back(v.c_str());
      hid_t attr = H5Acreate2(obj, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT);
      H5Awrite(attr, type, pointers.data());
      H5Aclose(attr);
      H5Tclose(type);
    } else {
      size_t width = 1;
      for (const std::string& v : values) width = std::max(width, v.size());
      hid_t type = H5Tcopy(H5T_C_S1);
      H5Tset_size(type, width);
      H5Tset_strpad(type, H5T_STR_NULLPAD);
      std::vector<char> buffer(width * values.size(), '\0');
      for (size_t i = 0; i < values.size(); ++i) std::memcpy(buffer.data() + i * width, values[i].data(), values[i].size());
      hid_t attr = H5Acreate2(obj, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT);
      H5Awrite(attr, type, buffer.data());
      H5Aclose(attr);
      H5Tclose(type);
    }
    H5Sclose(space);
    H5Oclose(obj);
  }

 private:
  bool H5Lexists_safe(const std::string& path) {
    // Checks each component so a missing parent is not an HDF5 error.
    std::string partial;
    size_t start = 1;
    while (start <= path.size()) {
      size_t slash = path.find('/', start);
      if (slash == std::string::npos) slash = path.size();
      partial = path.substr(0, slash);
      if (H5Lexists(file_, partial.c_str(), H5P_DEFAULT) <= 0) return false;
      start = slash + 1;
    }
    return true;
  }

  std::filesystem::path path_;
  hid_t file_ = -1;
  hid_t lcpl_ = -1;
};

// A zip of the given members, stored uncompressed (as Keras writes them).
inline void write_zip(const std::filesystem::path& path,
                      const std::vector<std::pair<std::string, std::vector<uint8_t>>>& members) {
  std::filesystem::remove(path);
  int error = 0;
  zip_t* archive = zip_open(path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &error);
  if (archive == nullptr) throw std::runtime_error("zip_open failed for " + path.string());
  for (const auto& [name, bytes] : members) {
    zip_source_t* source = zip_source_buffer(archive, bytes.data(), bytes.size(), 0);
    const zip_int64_t index = zip_file_add(archive, name.c_str(), source, ZIP_FL_OVERWRITE);
    if (index < 0) throw std::runtime_error("zip_file_add failed for " + name);
    zip_set_file_compression(archive, static_cast<zip_uint64_t>(index), ZIP_CM_STORE, 0);
  }
  if (zip_close(archive) != 0) throw std::runtime_error("zip_close failed for " + path.string());
}

inline std::vector<uint8_t> to_bytes(const std::string& text) { return std::vector<uint8_t>(text.begin(), text.end()); }

// A `.keras` archive: metadata.json, config.json and the weights written by `fill` into a fresh HDF5 file.
inline void write_keras_archive(const std::filesystem::path& path, const json& config, const std::string& keras_version,
                                const std::function<void(H5Builder&)>& fill) {
  const std::filesystem::path h5_path = path.string() + ".weights.h5";
  std::vector<uint8_t> weights;
  {
    H5Builder h5(h5_path);
    h5.group("/layers");
    h5.group("/vars");
    fill(h5);
    weights = h5.finish();
  }
  std::filesystem::remove(h5_path);
  const json metadata = {{"keras_version", keras_version}, {"date_saved", "2025-01-01@00:00:00"}};
  write_zip(path, {{"metadata.json", to_bytes(metadata.dump())},
                   {"config.json", to_bytes(config.dump())},
                   {"model.weights.h5", weights}});
}

inline uint32_t crc32_of(const std::vector<uint8_t>& bytes) {
  uint32_t crc = 0xffffffffu;
  for (uint8_t b : bytes) {
    crc ^= b;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

// One member of a hand-built zip: its real bytes and the sizes its headers declare (0 = the real size).
struct RawZipMember {
  std::string name;
  std::vector<uint8_t> bytes;
  uint64_t declared_size = 0;
  uint64_t declared_compressed = 0;
  uint16_t method = 0;  // 0 stored, 8 deflate
};

// A zip written byte by byte with zip64 size fields, so a member can declare sizes (e.g. 10 GB) that its
// data does not have.
inline void write_raw_zip(const std::filesystem::path& path, const std::vector<RawZipMember>& members) {
  std::vector<uint8_t> out;
  auto u16 = [&](uint32_t v) { out.push_back(static_cast<uint8_t>(v & 0xff)); out.push_back(static_cast<uint8_t>((v >> 8) & 0xff)); };
  auto u32 = [&](uint32_t v) { u16(v & 0xffff); u16(v >> 16); };
  auto u64 = [&](uint64_t v) { u32(static_cast<uint32_t>(v)); u32(static_cast<uint32_t>(v >> 32)); };
  std::vector<uint32_t> offsets;
  auto sizes = [](const RawZipMember& m) {
    return std::pair<uint64_t, uint64_t>(m.declared_size ? m.declared_size : m.bytes.size(),
                                         m.declared_compressed ? m.declared_compressed : m.bytes.size());
  };
  for (const RawZipMember& m : members) {
    offsets.push_back(static_cast<uint32_t>(out.size()));
    const auto [size, compressed] = sizes(m);
    u32(0x04034b50); u16(45); u16(0); u16(m.method); u16(0); u16(0x21); u32(crc32_of(m.bytes));
    u32(0xffffffffu); u32(0xffffffffu); u16(static_cast<uint32_t>(m.name.size())); u16(20);
    out.insert(out.end(), m.name.begin(), m.name.end());
    u16(0x0001); u16(16); u64(size); u64(compressed);
    out.insert(out.end(), m.bytes.begin(), m.bytes.end());
  }
  const uint32_t cd_offset = static_cast<uint32_t>(out.size());
  for (size_t i = 0; i < members.size(); ++i) {
    const RawZipMember& m = members[i];
    const auto [size, compressed] = sizes(m);
    u32(0x02014b50); u16(45); u16(45); u16(0); u16(m.method); u16(0); u16(0x21); u32(crc32_of(m.bytes));
    u32(0xffffffffu); u32(0xffffffffu); u16(static_cast<uint32_t>(m.name.size())); u16(20); u16(0);
    u16(0); u16(0); u32(0); u32(offsets[i]);
    out.insert(out.end(), m.name.begin(), m.name.end());
    u16(0x0001); u16(16); u64(size); u64(compressed);
  }
  const uint32_t cd_size = static_cast<uint32_t>(out.size()) - cd_offset;
  const uint32_t count = static_cast<uint32_t>(members.size());
  u32(0x06054b50); u16(0); u16(0); u16(count); u16(count); u32(cd_size); u32(cd_offset); u16(0);
  write_bytes(path, out.data(), out.size());
}

// ---- Keras config builders -------------------------------------------------------------------------

inline json dtype_policy(const std::string& name) {
  return {{"module", "keras"}, {"class_name", "DTypePolicy"}, {"config", {{"name", name}}}, {"registered_name", nullptr}};
}

inline json keras3_tensor(const std::string& producer, int node = 0) {
  return {{"class_name", "__keras_tensor__"},
          {"config", {{"shape", json::array()}, {"dtype", "float32"}, {"keras_history", {producer, node, 0}}}}};
}

// A Keras 3 layer entry as Functional.get_config() writes it; `inputs` empty for Sequential members.
inline json keras3_layer(const std::string& cls, const std::string& name, json config,
                         const std::vector<std::string>& inputs, bool functional_member = true) {
  config["name"] = name;
  if (!config.contains("dtype")) config["dtype"] = dtype_policy("float32");
  if (!config.contains("trainable")) config["trainable"] = true;
  json entry = {{"module", "keras.layers"}, {"class_name", cls}, {"config", config}, {"registered_name", nullptr}};
  if (functional_member) {
    entry["name"] = name;
    json args = json::array();
    if (inputs.size() == 1) {
      args.push_back(keras3_tensor(inputs[0]));
    } else {
      json list = json::array();
      for (const std::string& input : inputs) list.push_back(keras3_tensor(input));
      args.push_back(list);
    }
    entry["inbound_nodes"] = json::array();
    if (!inputs.empty()) entry["inbound_nodes"].push_back({{"args", args}, {"kwargs", json::object()}});
  }
  return entry;
}

inline json keras3_input(const std::string& name, const std::vector<int>& shape, bool functional_member = true) {
  json batch = json::array({nullptr});
  for (int d : shape) batch.push_back(d);
  json entry = {{"module", "keras.layers"},
                {"class_name", "InputLayer"},
                {"config", {{"batch_shape", batch}, {"dtype", "float32"}, {"sparse", false}, {"name", name}}},
                {"registered_name", nullptr}};
  if (functional_member) {
    entry["name"] = name;
    entry["inbound_nodes"] = json::array();
  }
  return entry;
}

// A Keras 2 layer entry of a Functional config: inbound_nodes [[[name, node, 0, {}], ...]].
inline json keras2_layer(const std::string& cls, const std::string& name, json config,
                         const std::vector<std::pair<std::string, int>>& inputs, bool functional_member = true) {
  config["name"] = name;
  if (!config.contains("dtype")) config["dtype"] = "float32";
  if (!config.contains("trainable")) config["trainable"] = true;
  json entry = {{"class_name", cls}, {"config", config}};
  if (functional_member) {
    entry["name"] = name;
    json node = json::array();
    for (const auto& [producer, index] : inputs) node.push_back(json::array({producer, index, 0, json::object()}));
    entry["inbound_nodes"] = json::array();
    if (!inputs.empty()) entry["inbound_nodes"].push_back(node);
  }
  return entry;
}

}  // namespace effcam::test
