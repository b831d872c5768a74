#include "converter/h5_file.h"

#include <H5LTpublic.h>  // H5LTpath_valid

#include <atomic>
#include <cstring>
#include <limits>

#include "effcam/error.hpp"

namespace effcam::h5 {

namespace {

constexpr uint64_t kMaxAttrElements = 10'000'000;
constexpr uint64_t kMaxAttrBytes = uint64_t{256} << 20;
constexpr uint64_t kMaxLinks = 10'000'000;
constexpr int kMaxAttrChunks = 100'000;

herr_t walk_innermost(unsigned /*n*/, const H5E_error2_t* err, void* data) {
  if (err != nullptr && err->desc != nullptr && err->desc[0] != '\0') {
    *static_cast<std::string*>(data) = err->desc;
  }
  return 0;
}

std::string with_reason(const std::string& message) {
  const std::string reason = last_error();
  return reason.empty() ? message : message + " (" + reason + ")";
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string text = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) text += ",";
    text += std::to_string(shape[i]);
  }
  return text + ")";
}

}  // namespace

QuietErrors::QuietErrors() {
  H5Eget_auto2(H5E_DEFAULT, &old_func_, &old_data_);
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
}

QuietErrors::~QuietErrors() { H5Eset_auto2(H5E_DEFAULT, old_func_, old_data_); }

std::string last_error() {
  std::string innermost;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, walk_innermost, &innermost);
  return innermost;
}

File File::open_path(const std::string& path, const std::string& label) {
  QuietErrors quiet;
  File file;
  file.label_ = label;
  Handle fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  if (fapl.valid()) H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_STRONG);
  file.file_ = Handle(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.valid() ? fapl.get() : H5P_DEFAULT), H5Fclose);
  if (!file.file_.valid()) throw Error(with_reason(path + ": cannot open as HDF5"));
  return file;
}

// File-image callbacks that hand libhdf5 our own buffer, read-only, without copying it and without ever
// freeing it (the File owns it). H5LTopen_file_image does the same but leaks its bookkeeping in 1.10.
namespace {

void* image_malloc(size_t size, H5FD_file_image_op_t /*op*/, void* udata) {
  auto* view = static_cast<ImageView*>(udata);
  return size == view->size ? view->data : nullptr;
}

void* image_memcpy(void* dest, const void* src, size_t size, H5FD_file_image_op_t /*op*/, void* /*udata*/) {
  if (dest != src) std::memcpy(dest, src, size);  // never happens: image_malloc hands out the source itself
  return dest;
}

void* image_realloc(void* /*ptr*/, size_t /*size*/, H5FD_file_image_op_t /*op*/, void* /*udata*/) {
  return nullptr;  // the image is read-only
}

herr_t image_free(void* /*ptr*/, H5FD_file_image_op_t /*op*/, void* /*udata*/) { return 0; }

void* udata_copy(void* udata) { return udata; }

herr_t udata_free(void* /*udata*/) { return 0; }

std::atomic<uint64_t> image_counter{0};

}  // namespace

File File::open_image(std::vector<uint8_t> image, const std::string& label) {
  QuietErrors quiet;
  File file;
  file.label_ = label;
  file.image_ = std::make_unique<std::vector<uint8_t>>(std::move(image));
  if (file.image_->empty()) throw Error(label + " is empty");
  file.view_ = std::make_unique<ImageView>();
  file.view_->data = file.image_->data();
  file.view_->size = file.image_->size();
  Handle fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  H5FD_file_image_callbacks_t callbacks{image_malloc, image_memcpy, image_realloc, image_free,
                                        udata_copy,   udata_free,   file.view_.get()};
  if (!fapl.valid() || H5Pset_fapl_core(fapl.get(), 1 << 20, 0) < 0 ||
      H5Pset_file_image_callbacks(fapl.get(), &callbacks) < 0 ||
      H5Pset_file_image(fapl.get(), file.image_->data(), file.image_->size()) < 0) {
    throw Error(with_reason(label + ": cannot set up an in-memory HDF5 file"));
  }
  // A unique name: libhdf5 treats two open core files of the same name as one file.
  const std::string name = "effcam-image-" + std::to_string(image_counter.fetch_add(1));
  file.file_ = Handle(H5Fopen(name.c_str(), H5F_ACC_RDONLY, fapl.get()), H5Fclose);
  if (!file.file_.valid()) throw Error(with_reason(label + " is not a readable HDF5 file"));
  return file;
}

File::~File() {
  QuietErrors quiet;
  file_.reset();
}

bool File::exists(const std::string& path) const {
  QuietErrors quiet;
  if (path.empty() || path == "/") return true;
  return H5LTpath_valid(file_.get(), path.c_str(), 1) > 0;
}

namespace {
H5I_type_t object_type(hid_t file, const std::string& path) {
  if (H5LTpath_valid(file, path.c_str(), 1) <= 0) return H5I_BADID;
  Handle obj(H5Oopen(file, path.c_str(), H5P_DEFAULT), H5Oclose);
  if (!obj.valid()) return H5I_BADID;
  return H5Iget_type(obj.get());
}
}  // namespace

bool File::is_group(const std::string& path) const {
  QuietErrors quiet;
  return object_type(file_.get(), path) == H5I_GROUP;
}

bool File::is_dataset(const std::string& path) const {
  QuietErrors quiet;
  return object_type(file_.get(), path) == H5I_DATASET;
}

std::vector<std::string> File::children(const std::string& group) const {
  QuietErrors quiet;
  Handle g(H5Gopen2(file_.get(), group.c_str(), H5P_DEFAULT), H5Gclose);
  if (!g.valid()) throw Error(with_reason(prefix() + "cannot open group " + group));
  H5G_info_t info;
  if (H5Gget_info(g.get(), &info) < 0) throw Error(with_reason(prefix() + "cannot list group " + group));
  if (info.nlinks > kMaxLinks) throw Error(prefix() + "group " + group + " has too many members");
  std::vector<std::string> names;
  names.reserve(static_cast<size_t>(info.nlinks));
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    const ssize_t length = H5Lget_name_by_idx(g.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    if (length < 0) throw Error(with_reason(prefix() + "cannot list group " + group));
    std::string name(static_cast<size_t>(length), '\0');
    if (H5Lget_name_by_idx(g.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), name.size() + 1,
                           H5P_DEFAULT) < 0) {
      throw Error(with_reason(prefix() + "cannot list group " + group));
    }
    names.push_back(std::move(name));
  }
  return names;
}

bool File::has_attr(const std::string& object, const std::string& name) const {
  QuietErrors quiet;
  if (!exists(object)) return false;
  return H5Aexists_by_name(file_.get(), object.c_str(), name.c_str(), H5P_DEFAULT) > 0;
}

std::vector<std::string> File::read_strings(hid_t attr, const std::string& what) const {
  Handle type(H5Aget_type(attr), H5Tclose);
  Handle space(H5Aget_space(attr), H5Sclose);
  if (!type.valid() || !space.valid()) throw Error(with_reason(what + ": cannot read"));
  const hssize_t npoints = H5Sget_simple_extent_npoints(space.get());
  if (npoints < 0) throw Error(with_reason(what + ": cannot read its shape"));
  const auto count = static_cast<uint64_t>(npoints);
  if (count > kMaxAttrElements) throw Error(what + " has too many elements (" + std::to_string(count) + ")");
  if (H5Tget_class(type.get()) != H5T_STRING) {
    if (count == 0) return {};  // h5py writes an empty Python list as an empty float64 array
    throw Error(what + " is not a string attribute");
  }
  std::vector<std::string> out;
  out.reserve(static_cast<size_t>(count));
  if (count == 0) return out;
  const htri_t variable = H5Tis_variable_str(type.get());
  if (variable < 0) throw Error(with_reason(what + ": cannot read its type"));
  if (variable > 0) {
    Handle mem(H5Tcopy(H5T_C_S1), H5Tclose);
    if (!mem.valid() || H5Tset_size(mem.get(), H5T_VARIABLE) < 0 ||
        H5Tset_cset(mem.get(), H5Tget_cset(type.get())) < 0) {
      throw Error(with_reason(what + ": cannot set up a string type"));
    }
    std::vector<char*> pointers(static_cast<size_t>(count), nullptr);
    if (H5Aread(attr, mem.get(), pointers.data()) < 0) throw Error(with_reason(what + ": cannot read"));
    for (char* p : pointers) out.emplace_back(p != nullptr ? p : "");
#if H5_VERSION_GE(1, 12, 0)
    H5Treclaim(mem.get(), space.get(), H5P_DEFAULT, pointers.data());
#else
    H5Dvlen_reclaim(mem.get(), space.get(), H5P_DEFAULT, pointers.data());
#endif
    return out;
  }
  const size_t size = H5Tget_size(type.get());
  if (size == 0) throw Error(what + " has a zero-sized string type");
  if (count > kMaxAttrBytes / size) throw Error(what + " is too large");
  const H5T_str_t pad = H5Tget_strpad(type.get());
  Handle mem(H5Tcopy(type.get()), H5Tclose);
  if (!mem.valid()) throw Error(with_reason(what + ": cannot set up a string type"));
  std::vector<char> buffer(static_cast<size_t>(count) * size);
  if (H5Aread(attr, mem.get(), buffer.data()) < 0) throw Error(with_reason(what + ": cannot read"));
  for (uint64_t i = 0; i < count; ++i) {
    const char* begin = buffer.data() + i * size;
    size_t length = 0;
    while (length < size && begin[length] != '\0') ++length;
    std::string text(begin, length);
    if (pad == H5T_STR_SPACEPAD) {
      while (!text.empty() && text.back() == ' ') text.pop_back();
    }
    out.push_back(std::move(text));
  }
  return out;
}

std::optional<std::vector<std::string>> File::string_list_attr(const std::string& object,
                                                               const std::string& name) const {
  QuietErrors quiet;
  if (!exists(object)) return std::nullopt;
  auto read_one = [&](const std::string& attr_name) {
    Handle attr(H5Aopen_by_name(file_.get(), object.c_str(), attr_name.c_str(), H5P_DEFAULT, H5P_DEFAULT),
                H5Aclose);
    const std::string what = prefix() + "attribute " + attr_name + " of " + object;
    if (!attr.valid()) throw Error(with_reason(what + ": cannot open"));
    return read_strings(attr.get(), what);
  };
  if (H5Aexists_by_name(file_.get(), object.c_str(), name.c_str(), H5P_DEFAULT) > 0) return read_one(name);
  // Keras splits lists that would overflow an object header into name0, name1, ...
  std::vector<std::string> all;
  int chunk = 0;
  for (; chunk < kMaxAttrChunks; ++chunk) {
    const std::string chunk_name = name + std::to_string(chunk);
    if (H5Aexists_by_name(file_.get(), object.c_str(), chunk_name.c_str(), H5P_DEFAULT) <= 0) break;
    std::vector<std::string> part = read_one(chunk_name);
    all.insert(all.end(), std::make_move_iterator(part.begin()), std::make_move_iterator(part.end()));
  }
  if (chunk == 0) return std::nullopt;
  return all;
}

std::optional<std::string> File::string_attr(const std::string& object, const std::string& name) const {
  QuietErrors quiet;
  if (!exists(object)) return std::nullopt;
  if (H5Aexists_by_name(file_.get(), object.c_str(), name.c_str(), H5P_DEFAULT) <= 0) return std::nullopt;
  Handle attr(H5Aopen_by_name(file_.get(), object.c_str(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  const std::string what = prefix() + "attribute " + name + " of " + object;
  if (!attr.valid()) throw Error(with_reason(what + ": cannot open"));
  std::vector<std::string> values = read_strings(attr.get(), what);
  if (values.size() != 1) {
    throw Error(what + " should hold one string, it holds " + std::to_string(values.size()));
  }
  return std::move(values.front());
}

keras::Array File::read_array(const std::string& path) const {
  QuietErrors quiet;
  const std::string what = prefix() + "dataset " + path;
  if (!exists(path)) throw Error(what + " is missing");
  Handle ds(H5Dopen2(file_.get(), path.c_str(), H5P_DEFAULT), H5Dclose);
  if (!ds.valid()) throw Error(with_reason(what + ": cannot open (not a dataset?)"));
  Handle space(H5Dget_space(ds.get()), H5Sclose);
  Handle type(H5Dget_type(ds.get()), H5Tclose);
  if (!space.valid() || !type.valid()) throw Error(with_reason(what + ": cannot read its shape or type"));

  keras::Array array;
  uint64_t count = 1;
  const H5S_class_t space_class = H5Sget_simple_extent_type(space.get());
  if (space_class == H5S_NULL) {
    count = 0;
  } else if (space_class == H5S_SIMPLE) {
    const int rank = H5Sget_simple_extent_ndims(space.get());
    if (rank < 0 || rank > H5S_MAX_RANK) throw Error(with_reason(what + ": cannot read its rank"));
    std::vector<hsize_t> dims(static_cast<size_t>(rank));
    if (rank > 0 && H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr) < 0) {
      throw Error(with_reason(what + ": cannot read its dimensions"));
    }
    for (hsize_t d : dims) {
      if (d > static_cast<hsize_t>(std::numeric_limits<int64_t>::max())) {
        throw Error(what + " has an impossible dimension " + std::to_string(d));
      }
      array.shape.push_back(static_cast<int64_t>(d));
    }
    for (hsize_t d : dims) {
      if (d != 0 && count > kMaxDatasetElements / d) {
        throw Error(what + " is too large: shape " + shape_text(array.shape) + " exceeds " +
                    std::to_string(kMaxDatasetElements) + " elements");
      }
      count *= d;
    }
  } else if (space_class != H5S_SCALAR) {
    throw Error(what + " has an unsupported dataspace");
  }

  const H5T_class_t type_class = H5Tget_class(type.get());
  const size_t element_size = H5Tget_size(type.get());
  bool bfloat16 = false;
  if (type_class == H5T_INTEGER) {
    const std::optional<std::string> dtype =
        H5Aexists_by_name(file_.get(), path.c_str(), "dtype", H5P_DEFAULT) > 0 ? string_attr(path, "dtype")
                                                                                : std::nullopt;
    if (dtype && *dtype == "bfloat16") {
      if (element_size != 2) throw Error(what + " is marked bfloat16 but has " + std::to_string(element_size) +
                                         "-byte elements");
      bfloat16 = true;
    }
  } else if (type_class != H5T_FLOAT) {
    throw Error(what + " has a non-numeric element type (HDF5 class " + std::to_string(type_class) + ")");
  }
  if (element_size == 0 || element_size > 16) throw Error(what + " has an unsupported element size");

  // A contiguous dataset must have all its bytes stored; a hostile header cannot make us read past them.
  Handle dcpl(H5Dget_create_plist(ds.get()), H5Pclose);
  if (dcpl.valid() && count > 0 && H5Pget_layout(dcpl.get()) == H5D_CONTIGUOUS) {
    const hsize_t stored = H5Dget_storage_size(ds.get());
    if (stored / element_size < count) {
      throw Error(what + " declares " + std::to_string(count) + " elements but stores only " +
                  std::to_string(stored) + " bytes");
    }
    if (image_ && count * element_size > image_->size()) {
      throw Error(what + " declares more data than the file holds");
    }
  }

  array.values.resize(static_cast<size_t>(count));
  if (count == 0) return array;
  if (bfloat16) {
    std::vector<uint16_t> raw(static_cast<size_t>(count));
    if (H5Dread(ds.get(), H5T_NATIVE_UINT16, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw.data()) < 0) {
      throw Error(with_reason(what + ": cannot read"));
    }
    for (size_t i = 0; i < raw.size(); ++i) {
      const uint32_t bits = static_cast<uint32_t>(raw[i]) << 16;
      std::memcpy(&array.values[i], &bits, sizeof(float));
    }
    return array;
  }
  if (H5Dread(ds.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, array.values.data()) < 0) {
    throw Error(with_reason(what + ": cannot read"));
  }
  return array;
}

}  // namespace effcam::h5
