#include "python/src/errors.h"

#include <pybind11/pybind11.h>

#include <exception>

#include "effcam/error.hpp"

namespace py = pybind11;

namespace effcam_python {
namespace {

// effcam.Error and its subclasses live in effcam/_errors.py (so they can also derive from Python's own ValueError /
// OSError); the translator looks them up once. Held for the interpreter's life, never released.
struct ErrorClasses {
  py::handle base, invalid_argument, io, format, image;
};
const ErrorClasses& error_classes() {
  static const ErrorClasses classes = [] {
    const py::module_ errors = py::module_::import("effcam._errors");
    const auto held = [&](const char* name) { return py::object(errors.attr(name)).release(); };
    return ErrorClasses{held("Error"), held("ValueError"), held("FileError"), held("FormatError"), held("ImageError")};
  }();
  return classes;
}

void raise_error(const effcam::Error& error) {
  const ErrorClasses& classes = error_classes();
  py::handle type = classes.base;
  switch (error.code()) {
    case effcam::ErrorCode::InvalidArgument: type = classes.invalid_argument; break;
    case effcam::ErrorCode::Io: type = classes.io; break;
    case effcam::ErrorCode::Format: type = classes.format; break;
    case effcam::ErrorCode::Image: type = classes.image; break;
    case effcam::ErrorCode::OutOfMemory:
      PyErr_SetString(PyExc_MemoryError, error.what());
      return;
    case effcam::ErrorCode::Internal: break;
  }
  PyErr_SetString(type.ptr(), error.what());
}

}  // namespace

void translate_errors() {
  error_classes();
  py::register_exception_translator([](std::exception_ptr thrown) {
    try {
      if (thrown) std::rethrow_exception(thrown);
    } catch (const effcam::Error& error) {
      raise_error(error);
    }
  });
}

}  // namespace effcam_python
