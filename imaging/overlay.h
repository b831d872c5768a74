// From a CAM to pictures: bilinear upsampling, matplotlib's "jet" colours, the Keras Grad-CAM tutorial's blend,
// and PNG / JPEG output.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "imaging/cam.h"
#include "imaging/image.h"

namespace effcam::imaging {

// matplotlib's LinearSegmentedColormap('jet', _jet_data, N=256) (colors.py _create_lookup_table), as 8-bit RGB:
// entry i = uint8(float32(lut[i]) * 255), the truncation keras' array_to_img applies to the tutorial's
// jet(np.arange(256)) colours (their min..max is 0..1, so its rescale is exactly * 255).
const std::array<std::array<uint8_t, 3>, 256>& jet_colormap();

// cam.normalized (h x w) resampled to out_w x out_h, row-major, bilinearly with half-pixel centres and edge
// clamping (cv2.resize INTER_LINEAR; PIL's BILINEAR when upsampling), no antialiasing.
// Throws effcam::Error on an inconsistent map, or an output size of zero or above kMaxImagePixels.
std::vector<float> upsample_map(const CamMap& cam, uint32_t out_w, uint32_t out_h);

// upsample_map, then jet_colormap()[uint8(255 * value)] (the tutorial's np.uint8(255 * heatmap)): RGB image.
Image render_heatmap(const CamMap& cam, uint32_t out_w, uint32_t out_h);

// The Keras Grad-CAM tutorial's blend (what the users' app returned): superimposed = heatmap * alpha + image in
// float32 (the image is not dimmed), then keras' array_to_img: minus the global min, divided by the max (when
// not 0), times 255, truncated to 8 bits. A grayscale image is expanded to RGB first. Both images must have the
// same size; render the heatmap at the image's size. Throws effcam::Error on a mismatch or a non-finite alpha.
Image blend_overlay(const Image& image_rgb, const Image& heatmap_rgb, float alpha = 0.4f);

enum class Encoding { Png, Jpeg };
// The image as a PNG or JPEG file's bytes (stb_image_write; JPEG at jpeg_quality 1..100). Throws effcam::Error on an
// invalid image or one too large for the format (JPEG: 65535 per side).
std::vector<uint8_t> encode_image(const Image& image, Encoding encoding, int jpeg_quality = 90);

// encode_image as PNG, or JPEG at quality 90, chosen by the extension (.png, .jpg, .jpeg, any case), written through
// a temporary file beside `path` and renamed over it, so a failed write leaves no partial image behind.
// Throws effcam::Error naming the path on an unknown extension, an invalid image or any I/O failure.
void write_image(const Image& image, const std::string& path);

}  // namespace effcam::imaging
