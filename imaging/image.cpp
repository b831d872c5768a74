#include "imaging/image.h"

#include <stb_image.h>
#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <string_view>

#include "effcam/error.hpp"

namespace effcam::imaging {
namespace {

enum class Format { Jpeg, Png, Bmp, Gif };

const char* format_name(Format format) {
  switch (format) {
    case Format::Jpeg: return "JPEG";
    case Format::Png: return "PNG";
    case Format::Bmp: return "BMP";
    case Format::Gif: return "GIF";
  }
  return "?";
}

bool starts_with(std::span<const uint8_t> bytes, std::string_view magic) {
  return bytes.size() >= magic.size() && std::memcmp(bytes.data(), magic.data(), magic.size()) == 0;
}

// Only these four formats reach stb_image: its other loaders (TGA, PSD, HDR, PIC, PNM) are not needed and TGA
// has no magic number, so random bytes could otherwise be "decoded".
Format sniff_format(std::span<const uint8_t> bytes, const std::string& name) {
  if (starts_with(bytes, "\x89PNG\r\n\x1a\n")) return Format::Png;
  if (starts_with(bytes, "\xff\xd8\xff")) return Format::Jpeg;
  if (starts_with(bytes, "GIF87a") || starts_with(bytes, "GIF89a")) return Format::Gif;
  if (starts_with(bytes, "BM")) return Format::Bmp;
  throw Error("image '" + name + "': not a JPEG, PNG, BMP or GIF file");
}

// PIL's ITU-R 601-2 luma: L = R*299/1000 + G*587/1000 + B*114/1000 in 16-bit fixed point, rounded.
uint8_t pil_luma(uint8_t r, uint8_t g, uint8_t b) {
  return static_cast<uint8_t>((r * 19595u + g * 38470u + b * 7471u + 0x8000u) >> 16);
}

// stb's native channel counts (1 L, 2 LA, 3 RGB, 4 RGBA) to PIL's convert("L") / convert("RGB").
void convert_channels(const uint8_t* in, uint32_t in_channels, size_t pixel_count, uint32_t out_channels,
                      uint8_t* out) {
  for (size_t i = 0; i < pixel_count; ++i, in += in_channels, out += out_channels) {
    const bool gray = in_channels <= 2;
    if (out_channels == 1) {
      out[0] = gray ? in[0] : pil_luma(in[0], in[1], in[2]);
    } else {
      out[0] = in[0];
      out[1] = gray ? in[0] : in[1];
      out[2] = gray ? in[0] : in[2];
    }
  }
}

uint32_t be16(const uint8_t* p) { return uint32_t{p[0]} << 8 | p[1]; }
uint32_t le16(const uint8_t* p) { return uint32_t{p[1]} << 8 | p[0]; }
uint32_t be32(const uint8_t* p) { return be16(p) << 16 | be16(p + 2); }
uint32_t le32(const uint8_t* p) { return le16(p + 2) << 16 | le16(p); }

struct Size {
  uint64_t width = 0;
  uint64_t height = 0;
};

// The first frame's size as the JPEG's SOF segment declares it; nullopt when no SOF precedes the scan.
std::optional<Size> jpeg_size(std::span<const uint8_t> bytes) {
  size_t pos = 2;
  while (pos + 4 <= bytes.size()) {
    if (bytes[pos] != 0xFF) return std::nullopt;
    const uint8_t marker = bytes[pos + 1];
    if (marker == 0xFF) {  // fill byte
      ++pos;
      continue;
    }
    const bool is_sof = marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    if (is_sof) {
      if (pos + 9 > bytes.size()) return std::nullopt;
      return Size{be16(&bytes[pos + 7]), be16(&bytes[pos + 5])};
    }
    if (marker == 0xDA || marker == 0xD9) return std::nullopt;  // scan data or end before any frame header
    pos += 2 + be16(&bytes[pos + 2]);
  }
  return std::nullopt;
}

// The size the file's header declares, read here rather than by stb so that an oversized or zero size gets its
// own message (stb reports every header failure as "unknown image type"); nullopt when the header is cut short.
std::optional<Size> declared_size(Format format, std::span<const uint8_t> bytes) {
  const uint8_t* p = bytes.data();
  switch (format) {
    case Format::Png:  // signature, IHDR length and type, then width, height ... interlace method (byte 28)
      if (bytes.size() < 29 || std::memcmp(p + 12, "IHDR", 4) != 0) return std::nullopt;
      return Size{be32(p + 16), be32(p + 20)};
    case Format::Gif:  // logical screen size: stb decodes every frame onto it
      if (bytes.size() < 10) return std::nullopt;
      return Size{le16(p + 6), le16(p + 8)};
    case Format::Bmp: {  // OS/2 headers (12 bytes) use 16-bit sizes; a negative height means top-down rows
      if (bytes.size() < 26) return std::nullopt;
      if (le32(p + 14) == 12) return Size{le16(p + 18), le16(p + 20)};
      const int64_t width = static_cast<int32_t>(le32(p + 18));
      const int64_t height = static_cast<int32_t>(le32(p + 22));
      return Size{uint64_t(std::max<int64_t>(width, 0)), uint64_t(height < 0 ? -height : height)};
    }
    case Format::Jpeg: return jpeg_size(bytes);
  }
  return std::nullopt;
}

// Skips GIF data sub-blocks from pos up to and including their zero-length terminator; false if cut short.
bool skip_gif_sub_blocks(std::span<const uint8_t> bytes, size_t& pos) {
  while (pos < bytes.size()) {
    const uint8_t length = bytes[pos++];
    if (length == 0) return true;
    pos += length;
  }
  return false;
}

size_t gif_color_table_entries(uint8_t flags) { return (flags & 0x80) ? size_t{2} << (flags & 7) : 0; }

// What PIL needs from a GIF's first image beyond stb's RGBA output: where it is and which palette colour its
// transparent pixels have (PIL's convert("RGB") shows that colour; stb leaves them black).
struct GifFrame {
  uint32_t left = 0, top = 0, width = 0, height = 0;
  std::span<const uint8_t> palette;  // RGB triples: the local colour table, else the global one
  int transparent = -1;              // palette index, -1 for none
};

// Walks the blocks up to the end of the first image's data; nullopt when the file ends before it.
std::optional<GifFrame> gif_first_frame(std::span<const uint8_t> bytes) {
  if (bytes.size() < 13) return std::nullopt;
  const uint8_t* p = bytes.data();
  GifFrame frame;
  const size_t global_entries = gif_color_table_entries(p[10]);
  size_t pos = 13 + 3 * global_entries;
  if (pos > bytes.size()) return std::nullopt;
  frame.palette = bytes.subspan(13, 3 * global_entries);
  while (pos < bytes.size()) {
    if (p[pos] == 0x21) {  // extension: label, then sub-blocks; a graphic control one may set transparency
      if (pos + 6 < bytes.size() && p[pos + 1] == 0xF9 && p[pos + 2] >= 4) {
        frame.transparent = (p[pos + 3] & 1) ? p[pos + 6] : -1;
      }
      pos += 2;
      if (!skip_gif_sub_blocks(bytes, pos)) return std::nullopt;
    } else if (p[pos] == 0x2C) {  // image: descriptor, local colour table, LZW code size, sub-blocks
      if (pos + 10 > bytes.size()) return std::nullopt;
      frame.left = le16(p + pos + 1);
      frame.top = le16(p + pos + 3);
      frame.width = le16(p + pos + 5);
      frame.height = le16(p + pos + 7);
      const size_t local_entries = gif_color_table_entries(p[pos + 9]);
      pos += 10;
      if (local_entries > 0) {
        if (pos + 3 * local_entries > bytes.size()) return std::nullopt;
        frame.palette = bytes.subspan(pos, 3 * local_entries);
      }
      pos += 3 * local_entries + 1;
      if (!skip_gif_sub_blocks(bytes, pos)) return std::nullopt;
      return frame;
    } else {
      return std::nullopt;  // trailer or junk before any image
    }
  }
  return std::nullopt;
}

// Gives the first frame's transparent pixels (alpha 0 in stb's RGBA output) their palette colour, as PIL does.
void show_gif_transparent_color(const GifFrame& frame, uint32_t width, uint32_t height, uint8_t* rgba) {
  if (frame.transparent < 0 || size_t(frame.transparent) * 3 + 3 > frame.palette.size()) return;
  const uint8_t* color = &frame.palette[size_t(frame.transparent) * 3];
  const uint32_t right = std::min(width, frame.left + frame.width);
  const uint32_t bottom = std::min(height, frame.top + frame.height);
  for (uint32_t y = frame.top; y < bottom; ++y) {
    for (uint32_t x = frame.left; x < right; ++x) {
      uint8_t* pixel = rgba + (size_t{y} * width + x) * 4;
      if (pixel[3] == 0) std::copy(color, color + 3, pixel);
    }
  }
}

// Whether a BMP holds all the rows its header declares: stb would silently decode a cut file (PIL refuses it).
bool bmp_is_complete(std::span<const uint8_t> bytes, Size size) {
  const uint8_t* p = bytes.data();
  const bool os2 = le32(p + 14) == 12;
  if (bytes.size() < (os2 ? 26u : 34u)) return false;
  const uint32_t bits_per_pixel = le16(p + (os2 ? 24 : 28));
  const uint32_t compression = os2 ? 0 : le32(p + 30);
  if (compression != 0 && compression != 3 && compression != 6) return true;  // RLE etc.: stb refuses them
  const uint64_t row_bytes = (size.width * bits_per_pixel + 31) / 32 * 4;
  return uint64_t{le32(p + 10)} + row_bytes * size.height <= bytes.size();
}

// Bytes of filtered scanlines (one filter byte per row) a PNG's IDAT stream must inflate to; declared_size has
// checked that the IHDR fields are there.
uint64_t png_scanline_bytes(std::span<const uint8_t> bytes, Size size) {
  const uint8_t* p = bytes.data();
  static constexpr uint8_t kChannelsOfColorType[7] = {1, 0, 3, 1, 2, 0, 4};
  const uint32_t bit_depth = p[24];
  const uint32_t channels = p[25] < 7 ? kChannelsOfColorType[p[25]] : 0;
  const auto rows_bytes = [&](uint64_t w, uint64_t h) {
    return w == 0 ? 0 : h * (1 + (w * channels * bit_depth + 7) / 8);
  };
  if (p[28] == 0) return rows_bytes(size.width, size.height);
  // Adam7: seven sub-images, each with its own rows.
  static constexpr uint8_t kPass[7][4] = {{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4},
                                          {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2}};
  uint64_t total = 0;
  for (const auto& [x0, y0, dx, dy] : kPass) {
    const uint64_t w = size.width > x0 ? (size.width - x0 + dx - 1) / dx : 0;
    const uint64_t h = size.height > y0 ? (size.height - y0 + dy - 1) / dy : 0;
    total += rows_bytes(w, h);
  }
  return total;
}

// Whether the IDAT stream inflates to no more than the image needs. stb grows its output buffer for as long as
// the stream goes on, so a small "deflate bomb" file would otherwise make it allocate gigabytes. The stream is
// inflated here into a small scratch buffer, only counting.
bool png_inflates_within_size(std::span<const uint8_t> bytes, Size size) {
  const uint64_t limit = png_scanline_bytes(bytes, size);
  z_stream stream{};
  if (inflateInit(&stream) != Z_OK) return false;
  std::vector<uint8_t> scratch(64 * 1024);
  uint64_t produced = 0;
  int status = Z_OK;
  for (size_t pos = 8; pos + 8 <= bytes.size() && status == Z_OK && produced <= limit;) {
    const uint64_t length = be32(&bytes[pos]);
    const bool is_idat = std::memcmp(&bytes[pos + 4], "IDAT", 4) == 0;
    const size_t data = pos + 8;
    const size_t available = static_cast<size_t>(std::min<uint64_t>(length, bytes.size() - data));
    pos = data + available + 4;  // + CRC
    if (!is_idat) continue;
    stream.next_in = const_cast<Bytef*>(&bytes[data]);  // zlib's API is not const-correct; it only reads
    stream.avail_in = static_cast<uInt>(available);
    while (stream.avail_in > 0 && status == Z_OK && produced <= limit) {
      stream.next_out = scratch.data();
      stream.avail_out = static_cast<uInt>(scratch.size());
      status = inflate(&stream, Z_NO_FLUSH);
      produced += scratch.size() - stream.avail_out;
    }
  }
  inflateEnd(&stream);
  return produced <= limit;
}

struct StbFree {
  void operator()(void* pixels) const { stbi_image_free(pixels); }
};

// Returns the pixel count of a size within the limits, or throws.
uint64_t check_size(Size size, const std::string& what) {
  if (size.width == 0 || size.height == 0) throw Error(what + ": zero width or height");
  if (size.width * size.height > kMaxImagePixels) {
    throw Error(what + ": " + std::to_string(size.width) + "x" + std::to_string(size.height) +
                " is above the limit of " + std::to_string(kMaxImagePixels) + " pixels");
  }
  return size.width * size.height;
}

void check_file_size(uint64_t bytes, const std::string& name) {
  if (bytes == 0) throw Error("image '" + name + "': file is empty");
  if (bytes > kMaxImageFileBytes) {
    throw Error("image '" + name + "': file is " + std::to_string(bytes) + " bytes, above the limit of " +
                std::to_string(kMaxImageFileBytes));
  }
}

// Runs one stb loader, load(&width, &height, &file_channels), and checks it produced the size stb_info reported.
template <typename Pixel, typename Load>
std::unique_ptr<Pixel, StbFree> stb_decode(Load load, int width, int height, const std::string& what) {
  int got_width = 0, got_height = 0, ignored = 0;
  std::unique_ptr<Pixel, StbFree> pixels(load(&got_width, &got_height, &ignored));
  if (!pixels) {
    const char* reason = stbi_failure_reason();
    throw Error(what + ": cannot decode (" + (reason ? reason : "unknown reason") + ")");
  }
  if (got_width != width || got_height != height) throw Error(what + ": header and image sizes differ");
  return pixels;
}

}  // namespace

Image decode_image(std::span<const uint8_t> bytes, uint32_t wanted_channels, const std::string& name) {
  if (wanted_channels != 1 && wanted_channels != 3) {
    throw Error("image '" + name + "': can only convert to 1 (L) or 3 (RGB) channels, not " +
                std::to_string(wanted_channels));
  }
  check_file_size(bytes.size(), name);
  const Format format = sniff_format(bytes, name);
  const std::string what = "image '" + name + "' (" + format_name(format) + ")";
  const auto* data = bytes.data();
  const int length = static_cast<int>(bytes.size());  // <= 256 MiB, fits

  // The header alone: the size is checked before stb allocates anything for pixels.
  const std::optional<Size> size = declared_size(format, bytes);
  if (!size) throw Error(what + ": header is truncated or corrupt");
  check_size(*size, what);
  int width = 0, height = 0, file_channels = 0;
  if (!stbi_info_from_memory(data, length, &width, &height, &file_channels)) {
    throw Error(what + ": corrupt or unsupported header");
  }
  const uint64_t pixel_count = check_size({uint64_t(width), uint64_t(height)}, what);
  // stb detects cut PNG and JPEG data itself but would decode a cut BMP or GIF silently (PIL refuses them).
  std::optional<GifFrame> gif_frame;
  if (format == Format::Gif) gif_frame = gif_first_frame(bytes);
  if ((format == Format::Gif && !gif_frame) || (format == Format::Bmp && !bmp_is_complete(bytes, *size))) {
    throw Error(what + ": pixel data is truncated");
  }
  if (format == Format::Png && !png_inflates_within_size(bytes, *size)) {
    throw Error(what + ": compressed pixel data inflates beyond the image's size");
  }
  if (file_channels < 1 || file_channels > 4) throw Error(what + ": unsupported channel count");

  Image image;
  image.width = static_cast<uint32_t>(width);
  image.height = static_cast<uint32_t>(height);
  image.channels = wanted_channels;
  image.pixels.resize(pixel_count * wanted_channels);

  if (format == Format::Png && file_channels == 1 && stbi_is_16_bit_from_memory(data, length)) {
    // PIL opens 16-bit grayscale as mode "I" and converting it to L or RGB clips at 255 (no rescaling).
    const auto gray = stb_decode<uint16_t>(
        [&](int* w, int* h, int* n) { return stbi_load_16_from_memory(data, length, w, h, n, 1); }, width, height,
        what);
    std::vector<uint8_t> clipped(pixel_count);
    std::transform(gray.get(), gray.get() + pixel_count, clipped.begin(),
                   [](uint16_t v) { return static_cast<uint8_t>(std::min<uint16_t>(v, 255)); });
    convert_channels(clipped.data(), 1, pixel_count, wanted_channels, image.pixels.data());
  } else {
    // Asking for the header's channel count (never 0) keeps stb from adding a tRNS alpha channel silently;
    // stb's 16 -> 8 bit reduction keeps the high byte, as PIL's "RGB;16B" / "RGBA;16B" raw modes do.
    const auto native = stb_decode<uint8_t>(
        [&](int* w, int* h, int* n) { return stbi_load_from_memory(data, length, w, h, n, file_channels); }, width,
        height, what);
    if (gif_frame && file_channels == 4) {
      show_gif_transparent_color(*gif_frame, image.width, image.height, native.get());
    }
    convert_channels(native.get(), static_cast<uint32_t>(file_channels), pixel_count, wanted_channels,
                     image.pixels.data());
  }
  return image;
}

Image load_image(const std::string& path, uint32_t wanted_channels) {
  std::ifstream file(path, std::ios::binary | std::ios::ate);
  if (!file) throw Error("image '" + path + "': cannot open", ErrorCode::Io);
  const std::streamoff size = file.tellg();
  if (size < 0) throw Error("image '" + path + "': cannot read its size", ErrorCode::Io);
  check_file_size(static_cast<uint64_t>(size), path);
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  file.seekg(0);
  if (!file.read(reinterpret_cast<char*>(bytes.data()), size)) throw Error("image '" + path + "': read failed", ErrorCode::Io);
  return decode_image(bytes, wanted_channels, path);
}

Image from_pixels(const uint8_t* data, uint32_t width, uint32_t height, uint32_t channels, size_t row_stride,
                  size_t pixel_stride, size_t channel_stride, uint32_t wanted_channels) {
  if (channels < 1 || channels > 4) throw Error("pixels have " + std::to_string(channels) + " channels, not 1 to 4");
  check_size({width, height}, "pixels");
  Image image{width, height, wanted_channels, std::vector<uint8_t>(size_t{width} * height * wanted_channels)};
  uint8_t pixel[4];
  uint8_t* out = image.pixels.data();
  for (uint32_t y = 0; y < height; ++y) {
    const uint8_t* row = data + y * row_stride;
    for (uint32_t x = 0; x < width; ++x, out += wanted_channels) {
      for (uint32_t k = 0; k < channels; ++k) pixel[k] = row[x * pixel_stride + k * channel_stride];
      convert_channels(pixel, channels, 1, wanted_channels, out);
    }
  }
  return image;
}

std::vector<float> to_float_hwc(const Image& image) {
  return std::vector<float>(image.pixels.begin(), image.pixels.end());
}

}  // namespace effcam::imaging
