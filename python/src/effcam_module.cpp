// effcam._effcam: the compiled half of the Python package, over the public API (include/effcam) and nothing else
// (effcam._convert holds convert(), so that importing effcam does not load HDF5 and libzip). It owns what must not
// be done in Python: a pool of Predictors shared by threads with the GIL released while they
// decode, run and explain; image sources that point into the caller's buffers (no copy); results whose arrays
// numpy views without a copy; effcam::Error turned into the package's exception classes (effcam/_errors.py).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "effcam/effcam.hpp"
#include "python/src/errors.h"

namespace py = pybind11;

namespace {

// ---------------------------------------------------------------------------------------------------------------
// The pool: up to `sessions` Predictors, made on first need (a single-threaded caller pays for one arena), each
// lent to one thread at a time. Every Predictor is planned for the same CAM layers; explaining at a layer outside
// that plan re-plans: later Predictors are made for the larger set and older ones are dropped as they come back,
// so memory stays bounded by `sessions` arenas (briefly more while old ones are still lent).
class SessionPool {
 public:
  // What a Predictor reports about its memory (Model.memory).
  struct MemoryFigures {
    uint64_t arena_bytes = 0, forward_arena_bytes = 0, arena_lower_bound_bytes = 0;
    uint64_t image_bytes = 0, max_image_bytes = 0;
  };

  // options: threads and the image limits; the CAM layers are the pool's.
  SessionPool(effcam::Model model, const effcam::PredictorOptions& options, uint32_t sessions,
              const std::optional<std::vector<std::string>>& cam_layers)
      : model_(std::move(model)), sessions_(sessions), options_(options) {
    if (sessions == 0 || sessions > 256) {
      throw effcam::Error("sessions must be 1..256, got " + std::to_string(sessions));
    }
    options_.cam_layers.clear();
    if (!cam_layers) {  // the model's default CAM layer, if it has one
      if (!model_.default_cam_layer().empty()) options_.cam_layers = {model_.default_cam_layer()};
    } else {  // the caller's list, resolved to the names Model::cam_layers() uses; empty: the forward pass alone
      for (const std::string& name : *cam_layers) add_layer(model_.cam_layer(name).name);
    }
    options_.explain = !options_.cam_layers.empty();
    // The first Predictor now, so that bad options (threads, layers) fail here rather than at the first call.
    free_.push_back(make_predictor(options_));
    created_ = 1;
  }

  // Gives its Predictor back to the pool when it goes out of scope.
  class Lease {
   public:
    Lease(SessionPool& pool, std::unique_ptr<effcam::Predictor> predictor, uint64_t generation)
        : pool_(pool), predictor_(std::move(predictor)), generation_(generation) {}
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease() { pool_.give_back(std::move(predictor_), generation_); }
    effcam::Predictor& predictor() { return *predictor_; }

   private:
    SessionPool& pool_;
    std::unique_ptr<effcam::Predictor> predictor_;
    uint64_t generation_;
  };

  // Waits for a free Predictor planned for `cam_layer` (empty: any). Called without the GIL.
  Lease acquire(const std::string& cam_layer) {
    std::vector<std::unique_ptr<effcam::Predictor>> retired;  // destroyed after the lock is released
    std::unique_lock lock(mutex_);
    if (!cam_layer.empty() && !planned(cam_layer)) {
      add_layer(cam_layer);
      options_.explain = true;
      ++generation_;
      created_ = 0;
      retired.swap(free_);
    }
    available_.wait(lock, [&] { return closed_ || !free_.empty() || created_ < sessions_; });
    if (closed_) throw closed_error();
    if (!free_.empty()) {
      std::unique_ptr<effcam::Predictor> predictor = std::move(free_.back());
      free_.pop_back();
      return Lease(*this, std::move(predictor), generation_);
    }
    ++created_;  // the slot is taken now; the arena is allocated outside the lock
    const uint64_t generation = generation_;
    const effcam::PredictorOptions options = options_;
    lock.unlock();
    try {
      return Lease(*this, make_predictor(options), generation);
    } catch (...) {
      lock.lock();
      if (generation == generation_) --created_;
      lock.unlock();
      available_.notify_one();
      throw;
    }
  }

  // Drops the idle Predictors now and the lent ones as they come back; later calls raise.
  void close() {
    std::vector<std::unique_ptr<effcam::Predictor>> idle;
    {
      std::lock_guard lock(mutex_);
      closed_ = true;
      idle.swap(free_);
    }
    available_.notify_all();
  }

  const effcam::Model& model() const { return model_; }
  uint32_t sessions() const { return sessions_; }
  uint32_t allocated() const {
    std::lock_guard lock(mutex_);
    return created_;
  }
  std::vector<std::string> planned_layers() const {
    std::lock_guard lock(mutex_);
    return options_.cam_layers;
  }
  MemoryFigures memory_figures() const {
    std::lock_guard lock(figures_mutex_);
    return figures_;
  }

 private:
  bool planned(const std::string& layer) const {
    return std::find(options_.cam_layers.begin(), options_.cam_layers.end(), layer) != options_.cam_layers.end();
  }
  void add_layer(const std::string& name) {
    if (!planned(name)) options_.cam_layers.push_back(name);
  }
  effcam::Error closed_error() const {
    return effcam::Error("model is closed: " + model_.path(), effcam::ErrorCode::InvalidArgument);
  }
  std::unique_ptr<effcam::Predictor> make_predictor(const effcam::PredictorOptions& options) {
    auto predictor = std::make_unique<effcam::Predictor>(model_, options);
    std::lock_guard lock(figures_mutex_);
    figures_ = {predictor->arena_bytes(), predictor->forward_arena_bytes(), predictor->arena_lower_bound_bytes(),
                predictor->image_bytes(), predictor->max_image_bytes()};
    return predictor;
  }
  void give_back(std::unique_ptr<effcam::Predictor> predictor, uint64_t generation) {
    {
      std::lock_guard lock(mutex_);
      if (generation != generation_) return;  // planned for fewer layers: dropped (not counted in created_)
      if (closed_) {
        --created_;
        return;
      }
      free_.push_back(std::move(predictor));
    }
    available_.notify_one();
  }

  const effcam::Model model_;
  const uint32_t sessions_;
  mutable std::mutex mutex_;
  std::condition_variable available_;
  effcam::PredictorOptions options_;  // of the Predictors made from now on
  std::vector<std::unique_ptr<effcam::Predictor>> free_;
  uint32_t created_ = 0;  // Predictors of the current generation, idle or lent
  uint64_t generation_ = 0;
  bool closed_ = false;
  mutable std::mutex figures_mutex_;
  MemoryFigures figures_;  // of the latest Predictor made
};

// ---------------------------------------------------------------------------------------------------------------
// Images from Python objects. The source points into the object's buffer, which stays exported (and a bytearray
// unresizable) until the call returns; buffers are released with the GIL held.

class HeldBuffer {
 public:
  HeldBuffer(const py::handle& object, int flags) {
    if (PyObject_GetBuffer(object.ptr(), &view_, flags) != 0) throw py::error_already_set();
  }
  HeldBuffer(const HeldBuffer&) = delete;
  HeldBuffer& operator=(const HeldBuffer&) = delete;
  ~HeldBuffer() { PyBuffer_Release(&view_); }
  const Py_buffer& view() const { return view_; }
  std::span<const uint8_t> bytes(size_t size) const { return {static_cast<const uint8_t*>(view_.buf), size}; }

 private:
  Py_buffer view_{};
};

struct HeldSource {
  std::unique_ptr<HeldBuffer> buffer;
  std::optional<effcam::ImageSource> source;
};

effcam::Error bad_image(const std::string& name, const std::string& problem) {
  return effcam::Error(name + ": " + problem, effcam::ErrorCode::InvalidArgument);
}

// The package's picture arguments: PNG pictures.
effcam::RenderOptions pictures(bool overlay, bool heatmap, const std::string& size, float alpha) {
  effcam::RenderOptions options;
  options.overlay = overlay ? effcam::ImageFormat::Png : effcam::ImageFormat::None;
  options.heatmap = heatmap ? effcam::ImageFormat::Png : effcam::ImageFormat::None;
  options.render_size = effcam::parse_render_size(size);
  options.overlay_alpha = alpha;
  return options;
}

// kind: "file" (image is a path string), "encoded" (any contiguous bytes-like object), "pixels" (a uint8 buffer of
// shape H x W or H x W x C with non-negative strides: what numpy and PIL inputs become in effcam/_model.py).
HeldSource make_source(const std::string& kind, const py::handle& image, const std::string& name) {
  HeldSource held;
  if (kind == "file") {
    std::string path = image.cast<std::string>();
    if (path.find('\0') != std::string::npos) throw bad_image("image", "a path with a NUL character");
    held.source = effcam::ImageSource::file(std::move(path));
  } else if (kind == "encoded") {
    held.buffer = std::make_unique<HeldBuffer>(image, PyBUF_SIMPLE);
    const Py_buffer& view = held.buffer->view();
    if (view.len == 0) throw bad_image(name, "empty buffer (0 bytes)");
    held.source = effcam::ImageSource::encoded(held.buffer->bytes(static_cast<size_t>(view.len)), name);
  } else if (kind == "pixels") {
    held.buffer = std::make_unique<HeldBuffer>(image, PyBUF_RECORDS_RO);
    const Py_buffer& view = held.buffer->view();
    const std::string format = view.format ? view.format : "B";
    if (view.itemsize != 1 || (format != "B" && format != "=B" && format != "<B" && format != "|B")) {
      throw bad_image(name, "pixels must be uint8, got buffer format '" + format + "'");
    }
    if (view.ndim != 2 && view.ndim != 3) {
      throw bad_image(name, "pixels must be H x W or H x W x C, got " + std::to_string(view.ndim) + " dimensions");
    }
    const Py_ssize_t height = view.shape[0], width = view.shape[1], channels = view.ndim == 3 ? view.shape[2] : 1;
    if (height == 0 || width == 0 || channels == 0) {
      throw bad_image(name, "empty image (" + std::to_string(height) + "x" + std::to_string(width) + "x" +
                                std::to_string(channels) + ")");
    }
    const Py_ssize_t row = view.strides[0], pixel = view.strides[1], channel = view.ndim == 3 ? view.strides[2] : 1;
    if (row < 0 || pixel < 0 || channel < 0) throw bad_image(name, "pixels with negative strides");
    constexpr Py_ssize_t kMaxSide = 0xffffffff;
    if (height > kMaxSide || width > kMaxSide || channels > kMaxSide) throw bad_image(name, "image too large");
    // The bytes from the first pixel's first channel to the last one's last channel.
    const size_t span = static_cast<size_t>((height - 1) * row + (width - 1) * pixel + (channels - 1) * channel + 1);
    held.source = effcam::ImageSource::pixels(held.buffer->bytes(span), static_cast<uint32_t>(width),
                                              static_cast<uint32_t>(height), static_cast<uint32_t>(channels),
                                              static_cast<size_t>(row), static_cast<size_t>(pixel),
                                              static_cast<size_t>(channel), name);
  } else {
    throw effcam::Error("unknown image kind '" + kind + "'");
  }
  return held;
}

// ---------------------------------------------------------------------------------------------------------------
// Results: one effcam::Prediction, whose vectors numpy reads in place (read-only views that keep it alive).

struct Result {
  effcam::Prediction prediction;
};

py::array_t<float> view_of(const std::vector<float>& values, std::vector<py::ssize_t> shape, const py::handle& owner) {
  py::array_t<float> array(std::move(shape), values.data(), owner);
  py::detail::array_proxy(array.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  return array;
}

const effcam::CamResult& cam_of(const Result& result) {
  if (!result.prediction.cam) throw effcam::Error("this prediction carries no CAM");
  return *result.prediction.cam;
}

py::object png_bytes(const std::optional<effcam::EncodedImage>& image) {
  if (!image) return py::none();
  return py::bytes(reinterpret_cast<const char*>(image->bytes.data()), image->bytes.size());
}

// ---------------------------------------------------------------------------------------------------------------
// The model as Python sees it: the loaded file plus its pool.

struct ModelHandle {
  std::string path;
  std::shared_ptr<SessionPool> pool;  // null once closed; a running call holds its own reference

  std::shared_ptr<SessionPool> open() const {
    if (!pool) throw effcam::Error("model is closed: " + path, effcam::ErrorCode::InvalidArgument);
    return pool;
  }
};

std::shared_ptr<Result> run(const ModelHandle& handle, const std::string& kind, const py::handle& image,
                            const std::string& name, uint32_t top_k, const std::string& cam, const std::string& layer,
                            const std::string& score, std::optional<uint32_t> class_index, bool overlay, bool heatmap,
                            const std::string& size, float alpha, bool apply_exif_orientation, bool fast_jpeg_decode,
                            bool input_image) {
  const std::shared_ptr<SessionPool> pool_reference = handle.open();
  SessionPool& pool = *pool_reference;
  effcam::PredictOptions options;
  options.top_k = top_k;
  options.apply_exif_orientation = apply_exif_orientation;
  options.fast_jpeg_decode = fast_jpeg_decode;
  options.input_image = input_image ? effcam::ImageFormat::Png : effcam::ImageFormat::None;
  options.cam = effcam::parse_cam_method(cam);
  std::string cam_layer;
  if (options.cam != effcam::CamMethod::None) {
    if (!layer.empty()) {
      cam_layer = pool.model().cam_layer(layer).name;
    } else {
      const std::vector<std::string> planned = pool.planned_layers();
      cam_layer = planned.empty() ? pool.model().default_cam_layer() : planned.front();
      if (cam_layer.empty()) throw effcam::Error(pool.model().path() + ": the model has no layer a CAM can target");
    }
    options.cam_layer = cam_layer;
    options.cam_score = effcam::parse_cam_score(score);
    options.cam_class = class_index;
    options.pictures = pictures(overlay, heatmap, size, alpha);
  }
  HeldSource held = make_source(kind, image, name);
  auto result = std::make_shared<Result>();
  {
    py::gil_scoped_release release;
    SessionPool::Lease lease = pool.acquire(cam_layer);
    result->prediction = lease.predictor().predict(*held.source, options);
  }
  return result;
}

// Another picture of an explained result's CAM over the same image (Predictor::render: no network pass).
std::shared_ptr<Result> render(const ModelHandle& handle, const Result& explained, const std::string& kind,
                               const py::handle& image, const std::string& name, bool overlay, bool heatmap,
                               const std::string& size, float alpha) {
  const std::shared_ptr<SessionPool> pool_reference = handle.open();
  const effcam::RenderOptions options = pictures(overlay, heatmap, size, alpha);
  HeldSource held = make_source(kind, image, name);
  auto result = std::make_shared<Result>();
  {
    py::gil_scoped_release release;
    SessionPool::Lease lease = pool_reference->acquire("");
    result->prediction = lease.predictor().render(explained.prediction, *held.source, options);
  }
  return result;
}

}  // namespace

PYBIND11_MODULE(_effcam, m) {
  m.doc() = "The compiled part of effcam (private: use the effcam package).";
  effcam_python::translate_errors();

  m.def("version", &effcam::version, "The library's version.");
  m.def("set_dispatch", &effcam::set_dispatch, py::arg("path"),
        "Forces the kernel path of the whole process (\"avx512\", \"avx2\", \"scalar\"); not while predicting.");
  m.def("dispatch", &effcam::dispatch, "The kernel path predictions run on.");
  m.def("available_dispatches", &effcam::available_dispatches, "The kernel paths this CPU runs, best first.");
  m.def("parse_byte_size", &effcam::parse_byte_size, py::arg("text"),
        "A byte count as the tools take it (\"12000000\", \"12MiB\", K / M / G); ValueError otherwise.");
  m.def("error_json", &effcam::error_json, py::arg("image"), py::arg("message"),
        "The line effcam-predict --json prints for an image that failed.");

  // Metadata reads run with the GIL held, as close() does, so the handle's own reference keeps the model alive.
  const auto model_of = [](const ModelHandle& h) -> const effcam::Model& { return h.open()->model(); };
  py::class_<ModelHandle>(m, "Model")
      .def(py::init([](const std::string& path, uint32_t threads, uint32_t sessions,
                       const std::optional<std::vector<std::string>>& cam_layers, uint64_t max_image_pixels,
                       uint64_t max_image_bytes, uint64_t memory_budget_bytes) {
             effcam::PredictorOptions options;
             options.threads = threads;
             options.max_image_pixels = max_image_pixels;
             options.max_image_bytes = max_image_bytes;
             options.memory_budget_bytes = memory_budget_bytes;
             py::gil_scoped_release release;  // mapping and validating a large file takes a while
             effcam::Model model = effcam::Model::load(path);
             return ModelHandle{path, std::make_shared<SessionPool>(std::move(model), options, sessions, cam_layers)};
           }),
           py::arg("path"), py::arg("threads"), py::arg("sessions"), py::arg("cam_layers"),
           py::arg("max_image_pixels"), py::arg("max_image_bytes"), py::arg("memory_budget_bytes"))
      .def_property_readonly("path", [](const ModelHandle& h) { return h.path; })
      .def_property_readonly("input_size", [=](const ModelHandle& h) {
        return std::make_pair(model_of(h).input_height(), model_of(h).input_width());
      })
      .def_property_readonly("channels", [=](const ModelHandle& h) { return model_of(h).input_channels(); })
      .def_property_readonly("classes", [=](const ModelHandle& h) { return model_of(h).classes(); })
      .def_property_readonly("labels", [=](const ModelHandle& h) { return model_of(h).labels(); })
      .def_property_readonly("has_labels", [=](const ModelHandle& h) { return model_of(h).has_labels(); })
      .def_property_readonly("has_logits", [=](const ModelHandle& h) { return model_of(h).has_logits(); })
      .def_property_readonly("layers", [=](const ModelHandle& h) {
        py::list layers;
        for (const effcam::LayerInfo& l : model_of(h).cam_layers()) {
          layers.append(py::make_tuple(l.name, l.class_name, l.height, l.width, l.channels));
        }
        return layers;
      })
      .def_property_readonly("default_cam_layer", [=](const ModelHandle& h) { return model_of(h).default_cam_layer(); })
      .def_property_readonly("file_bytes", [=](const ModelHandle& h) { return model_of(h).file_bytes(); })
      .def_property_readonly("weight_bytes", [=](const ModelHandle& h) { return model_of(h).weight_bytes(); })
      .def_property_readonly("ops", [=](const ModelHandle& h) { return model_of(h).ops(); })
      .def_property_readonly("planned_layers", [](const ModelHandle& h) { return h.open()->planned_layers(); })
      .def_property_readonly("sessions", [](const ModelHandle& h) { return h.open()->sessions(); })
      .def_property_readonly("sessions_allocated", [](const ModelHandle& h) { return h.open()->allocated(); })
      .def_property_readonly("memory", [](const ModelHandle& h) {
        const SessionPool::MemoryFigures figures = h.open()->memory_figures();
        py::dict memory;
        memory["arena_bytes"] = figures.arena_bytes;
        memory["forward_arena_bytes"] = figures.forward_arena_bytes;
        memory["arena_lower_bound_bytes"] = figures.arena_lower_bound_bytes;
        memory["image_bytes"] = figures.image_bytes;
        memory["max_image_bytes"] = figures.max_image_bytes;
        return memory;
      })
      .def_property_readonly("closed", [](const ModelHandle& h) { return !h.pool; })
      .def("close",
           [](ModelHandle& h) {
             if (!h.pool) return;
             h.pool->close();
             // The mapping goes with the last reference: now, or when a call still running returns.
             std::shared_ptr<SessionPool> pool = std::move(h.pool);
             py::gil_scoped_release release;
             pool.reset();
           })
      .def("run", &run, py::arg("kind"), py::arg("image"), py::arg("name"), py::arg("top_k"), py::arg("cam"),
           py::arg("layer"), py::arg("score"), py::arg("class_index"), py::arg("overlay"), py::arg("heatmap"),
           py::arg("size"), py::arg("alpha"), py::arg("apply_exif_orientation"), py::arg("fast_jpeg_decode"),
           py::arg("input_image"))
      .def("render", &render, py::arg("result"), py::arg("kind"), py::arg("image"), py::arg("name"),
           py::arg("overlay"), py::arg("heatmap"), py::arg("size"), py::arg("alpha"));

  py::class_<Result, std::shared_ptr<Result>>(m, "Result")
      .def_property_readonly("image", [](const Result& r) { return r.prediction.image; })
      .def_property_readonly("input_size", [](const Result& r) {
        return std::make_pair(r.prediction.input_height, r.prediction.input_width);
      })
      .def_property_readonly("image_size", [](const Result& r) {
        return std::make_pair(r.prediction.image_height, r.prediction.image_width);
      })
      .def_property_readonly("exif_orientation", [](const Result& r) { return r.prediction.exif_orientation; })
      .def_property_readonly("applied_orientation", [](const Result& r) { return r.prediction.applied_orientation; })
      .def_property_readonly("jpeg_scale_denominator",
                             [](const Result& r) { return r.prediction.jpeg_scale_denominator; })
      .def_property_readonly("top_k", [](const Result& r) {
        py::list top;
        for (const effcam::ClassScore& s : r.prediction.top_k) top.append(py::make_tuple(s.label, s.index, s.probability));
        return top;
      })
      .def_property_readonly("probabilities", [](py::object self) {
        const Result& r = self.cast<const Result&>();
        return view_of(r.prediction.probabilities, {static_cast<py::ssize_t>(r.prediction.probabilities.size())}, self);
      })
      .def_property_readonly("logits", [](py::object self) -> py::object {
        const Result& r = self.cast<const Result&>();
        if (r.prediction.logits.empty()) return py::none();
        return view_of(r.prediction.logits, {static_cast<py::ssize_t>(r.prediction.logits.size())}, self);
      })
      .def_property_readonly("timing_ms", [](const Result& r) {
        const effcam::Timings& t = r.prediction.timing;
        py::dict timing;
        timing["decode"] = t.decode_ms;
        timing["preprocess"] = t.preprocess_ms;
        timing["forward"] = t.forward_ms;
        timing["cam"] = t.cam_ms;
        timing["total"] = t.total_ms;
        return timing;
      })
      .def_property_readonly("dispatch", [](const Result& r) { return r.prediction.dispatch; })
      .def_property_readonly("memory", [](const Result& r) {
        const effcam::MemoryFigures& f = r.prediction.memory;
        py::dict memory;
        memory["peak_rss_bytes"] = f.peak_rss_bytes;
        memory["rss_bytes"] = f.rss_bytes;
        memory["arena_bytes"] = f.arena_bytes;
        memory["forward_arena_bytes"] = f.forward_arena_bytes;
        memory["arena_lower_bound_bytes"] = f.arena_lower_bound_bytes;
        if (r.prediction.cam) {
          memory["arena_floor_bytes"] = f.arena_floor_bytes;
          memory["checkpoints"] = f.checkpoints;
          memory["recomputed_ops"] = f.recomputed_ops;
          memory["recomputed_multiply_adds"] = f.recomputed_multiply_adds;
          memory["rerun_multiply_adds"] = f.rerun_multiply_adds;
          memory["pre_activations_kept_by_forward"] = f.pre_activations_kept_by_forward;
          memory["pre_activations_kept_by_recomputation"] = f.pre_activations_kept_by_recomputation;
          memory["forward_multiply_adds"] = f.forward_multiply_adds;
        }
        return memory;
      })
      .def("to_json", [](const Result& r, const std::string& model, bool embed_images) {
        effcam::JsonOptions options;
        options.model = model;
        options.embed_images = embed_images;
        return effcam::to_json(r.prediction, options);
      }, py::arg("model") = "", py::arg("embed_images") = false)
      .def_property_readonly("has_cam", [](const Result& r) { return r.prediction.cam.has_value(); })
      .def_property_readonly("cam", [](py::object self) {
        const effcam::CamResult& cam = cam_of(self.cast<const Result&>());
        return view_of(cam.values, {cam.height, cam.width}, self);
      })
      .def_property_readonly("raw", [](py::object self) {
        const effcam::CamResult& cam = cam_of(self.cast<const Result&>());
        return view_of(cam.raw, {cam.height, cam.width}, self);
      })
      .def_property_readonly("cam_method", [](const Result& r) { return effcam::cam_method_name(cam_of(r).method); })
      .def_property_readonly("cam_layer", [](const Result& r) { return cam_of(r).layer; })
      .def_property_readonly("cam_class_index", [](const Result& r) { return cam_of(r).class_index; })
      .def_property_readonly("cam_label", [](const Result& r) { return cam_of(r).label; })
      .def_property_readonly("cam_score", [](const Result& r) { return cam_of(r).score; })
      .def_property_readonly("cam_score_kind",
                             [](const Result& r) { return effcam::cam_score_name(cam_of(r).score_kind); })
      .def_property_readonly("cam_empty", [](const Result& r) { return cam_of(r).empty; })
      .def_property_readonly("overlay_png", [](const Result& r) { return png_bytes(r.prediction.overlay); })
      .def_property_readonly("heatmap_png", [](const Result& r) { return png_bytes(r.prediction.heatmap); })
      .def_property_readonly("input_png", [](const Result& r) { return png_bytes(r.prediction.input_image); });
}
