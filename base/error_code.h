// Naming an error by the input it arose in: the parsers below the API throw effcam::Error with the generic
// InvalidArgument code, and the caller that knows what was being read (a model file, an image) relabels it.
#pragma once

#include "effcam/error.hpp"

namespace effcam {

// Runs step() and returns what it returns; an effcam::Error it throws with ErrorCode::InvalidArgument is rethrown,
// same message, with `code`. Other codes (Io: cannot open) pass through unchanged.
template <class Step>
auto with_error_code(ErrorCode code, Step step) {
  try {
    return step();
  } catch (const Error& e) {
    if (e.code() != ErrorCode::InvalidArgument) throw;
    throw Error(e.what(), code);
  }
}

}  // namespace effcam
