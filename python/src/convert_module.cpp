// effcam._convert: effcam.convert() over the public API. A module of its own, imported on the first call, so that
// the converter's HDF5 and libzip (and their ~40 libraries, ~5 MiB resident) stay out of processes that only
// predict.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "effcam/effcam.hpp"
#include "python/src/errors.h"

namespace py = pybind11;

PYBIND11_MODULE(_convert, m) {
  m.doc() = "effcam's converter (private: use effcam.convert).";
  effcam_python::translate_errors();

  using Report = effcam::ConversionReport;
  py::class_<Report>(m, "ConversionReport", "What effcam.convert() read and wrote; str() is effcam-convert's summary.")
      .def_readonly("input", &Report::input, "The Keras file read.")
      .def_readonly("output", &Report::output, "The .effcam file written.")
      .def_readonly("source_format", &Report::source_format, "\"keras-zip\" (.keras) or \"legacy-h5\" (.h5).")
      .def_readonly("keras_version", &Report::keras_version, "The Keras version the file names (may be empty).")
      .def_readonly("model_name", &Report::model_name, "The Keras model's name.")
      .def_readonly("keras_layers", &Report::keras_layers, "Layers in the Keras model.")
      .def_readonly("ops", &Report::ops, "Fused ops the engine runs.")
      .def_readonly("keras_parameters", &Report::keras_parameters, "Parameters in the Keras file.")
      .def_readonly("stored_parameters", &Report::stored_parameters, "Parameters stored (after BatchNorm folding).")
      .def_property_readonly("input_size", [](const Report& r) { return std::make_pair(r.input_height, r.input_width); },
                             "(height, width) of the model's input.")
      .def_readonly("channels", &Report::input_channels, "1 (grayscale) or 3 (RGB).")
      .def_readonly("classes", &Report::classes, "Number of classes.")
      .def_readonly("labelled", &Report::labelled, "True when the file carries labels.")
      .def_property_readonly("dtype", [](const Report& r) { return r.weights == effcam::WeightType::F16 ? "fp16" : "fp32"; },
                             "\"fp16\" or \"fp32\" weights.")
      .def_readonly("file_bytes", &Report::file_bytes, "Size of the .effcam file.")
      .def("__str__", &effcam::format_report)
      .def("__repr__", [](const Report& r) {
        return "<effcam.ConversionReport " + r.output + ", " + std::to_string(r.classes) + " classes>";
      });
  m.attr("ConversionReport").attr("__module__") = "effcam";  // where users meet it

  m.def("convert",
        [](const std::string& input, const std::string& output, const std::string& dtype,
           std::vector<std::string> labels, std::optional<std::pair<uint32_t, uint32_t>> input_size) {
          effcam::ConvertOptions options;
          if (dtype == "fp16") {
            options.weights = effcam::WeightType::F16;
          } else if (dtype == "fp32") {
            options.weights = effcam::WeightType::F32;
          } else {
            throw effcam::Error("dtype must be fp16 or fp32, got '" + dtype + "'");
          }
          options.labels = std::move(labels);
          options.input_size = input_size;
          py::gil_scoped_release release;
          return effcam::convert(input, output, options);
        },
        py::arg("input"), py::arg("output"), py::arg("dtype"), py::arg("labels"), py::arg("input_size"));
}
