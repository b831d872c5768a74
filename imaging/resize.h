// Whole-image Lanczos resize reproducing PIL's Image.resize((w, h), Image.LANCZOS) on 8-bit images bit for bit
// (Pillow's libImaging/Resample.c: separable support-3 Lanczos widened by the downscale factor, 22-bit
// fixed-point coefficients, horizontal pass first, each pass rounded and clipped to 8 bits).
#pragma once

#include <cstdint>

#include "imaging/image.h"

namespace effcam::imaging {

// Returns a new image of out_w x out_h with the same channel count (1..4); same size returns a copy.
// Throws effcam::Error on an inconsistent input image, or an input or output size of zero or above kMaxImagePixels.
Image resize_lanczos(const Image& image, uint32_t out_w, uint32_t out_h);

}  // namespace effcam::imaging
