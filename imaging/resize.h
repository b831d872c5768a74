// Lanczos resize reproducing PIL's Image.resize((w, h), Image.LANCZOS) on 8-bit images bit for bit (Pillow's
// libImaging/Resample.c: separable support-3 Lanczos widened by the downscale factor, 22-bit fixed-point
// coefficients, horizontal pass first, each pass rounded and clipped to 8 bits), on a whole image or on rows as a
// decoder produces them.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "imaging/image.h"

namespace effcam::imaging {

// PIL's resize of an image streamed in stored row order, as if `orientation` (ImageOps.exif_transpose) had been
// applied to the whole image first: out = exif_transpose(stored).resize((out_w, out_h), LANCZOS), bit for bit.
// Memory: out_w x (rows of the oriented image the vertical pass reads) x channels bytes for the intermediate
// image, plus, for the orientations that swap axes, int32 accumulators for the output columns whose filter
// window covers the current row (about 7 for a downscale; all out_w for an upscale): never the whole input.
class LanczosStream {
 public:
  // stored_w x stored_h is the image as decoded (before orientation); out_w x out_h the size after it.
  // channels 1..4. Throws effcam::Error on a zero size or one above kMaxImagePixels.
  LanczosStream(uint32_t stored_w, uint32_t stored_h, uint32_t channels, uint32_t out_w, uint32_t out_h,
                Orientation orientation = Orientation::Normal);
  ~LanczosStream();
  LanczosStream(const LanczosStream&) = delete;
  LanczosStream& operator=(const LanczosStream&) = delete;

  // The next stored row, stored_w * channels bytes, top to bottom; exactly stored_h calls, then finish().
  void push_row(const uint8_t* row);
  // The resized image; throws effcam::Error if fewer than stored_h rows were pushed.
  Image finish();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Returns a new image of out_w x out_h with the same channel count (1..4); same size returns a copy.
// Throws effcam::Error on an inconsistent input image, or an input or output size of zero or above kMaxImagePixels.
Image resize_lanczos(const Image& image, uint32_t out_w, uint32_t out_h);

}  // namespace effcam::imaging
