// effcam::Error as the Python package's exceptions (effcam/_errors.py), for both compiled modules.
#pragma once

namespace effcam_python {

// Imports effcam._errors (so a broken install fails at import, not at the first error) and registers the
// translator: InvalidArgument -> effcam.ValueError, Io -> FileError, Format -> FormatError, Image -> ImageError,
// OutOfMemory -> MemoryError, anything else -> effcam.Error, each with the library's one-line message.
void translate_errors();

}  // namespace effcam_python
