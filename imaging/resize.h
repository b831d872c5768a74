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
// Memory, never the whole input nor PIL's intermediate image: the output; the filters' coefficients (about
// 6 x the input's side int32 per axis); for an unrotated image, the horizontal pass's row planes (6 bytes per input
// pixel of a row) and the vertical pass's int32 sums of the output rows whose window holds the current row (about 7
// rows of out_w for a downscale), or a ring of 7 intermediate rows (upscale); for a rotated one, the same per
// column of the oriented image (a stored row), so about 28 x stored_w x channels bytes.
class LanczosStream {
 public:
  // stored_w x stored_h is the image as decoded (before orientation); out_w x out_h the size after it.
  // channels 1..4. Throws effcam::Error on a zero size, an output above kMaxImagePixels or an input side above
  // kMaxImageSide.
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
