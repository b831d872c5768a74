// libFuzzer target: any bytes given to the image decoders (JPEG through libjpeg-turbo, PNG through libpng, WebP
// through libwebp, BMP / GIF through stb_image) and the streaming Lanczos resize must give a model input or an
// effcam::Error, never crash or run away. The input's last byte picks the options (channels, EXIF orientation,
// DCT scaling), the rest is the file. The pixel cap is lowered to 256 Ki pixels so that one run stays within the
// fuzzer's time and memory limits under the sanitizers (a 32x32792 JPEG took 12 s instrumented, 50 ms plain); the
// cap itself and large images are tests/image's.
#include <cstdint>
#include <span>

#include "effcam/error.hpp"
#include "imaging/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t flags = data[size - 1];
  effcam::imaging::DecodeOptions options;
  options.max_pixels = 262'144;
  options.apply_exif_orientation = (flags & 1) != 0;
  options.fast_jpeg_dct = (flags & 2) != 0;
  const uint32_t channels = (flags & 4) ? 1 : 3;
  try {
    const effcam::imaging::ModelImage input = effcam::imaging::load_model_image(
        effcam::imaging::ImageSource::memory(std::span<const uint8_t>(data, size - 1), "fuzz"), 37, 29, channels, options);
    if (input.image.pixels.size() != size_t{37} * 29 * channels) __builtin_trap();
  } catch (const effcam::Error&) {
  }
  return 0;
}
