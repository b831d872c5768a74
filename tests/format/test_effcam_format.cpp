// The .effcam format: weight packing, fp16 casting, CRC-32C, the writer and the loader's structural validation.
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "converter/effcam_writer.h"
#include "format/checksum.h"
#include "effcam/error.hpp"
#include "format/format.h"
#include "format/model_file.h"
#include "format/half.h"
#include "format/weight_layout.h"
#include "tests/format/effcam_test_files.h"
#include "tests/test_support.h"

namespace {

using effcam::Error;
using effcam::ModelFile;
namespace format = effcam::format;
using effcam::test::random_values;
using effcam::test::reseal;
using effcam::test::section_table;
using effcam::test::SmallModel;

std::span<const uint8_t> as_u8(std::string_view text) {
  return {reinterpret_cast<const uint8_t*>(text.data()), text.size()};
}

// Runs `action`, which must throw effcam::Error; returns the message ("" and a failed check if it does not throw).
template <class Action>
std::string error_of(Action&& action) {
  try {
    action();
  } catch (const Error& error) {
    return error.what();
  }
  FAIL_CHECK("no effcam::Error thrown");
  return "";
}

#define CHECK_ERROR_CONTAINS(expression, fragment)                     \
  do {                                                                 \
    const std::string message_ = error_of([&] { (void)(expression); }); \
    INFO("message: ", message_);                                       \
    CHECK(message_.find(fragment) != std::string::npos);               \
    CHECK(message_.find('\n') == std::string::npos);                   \
  } while (false)

// ---------------------------------------------------------------------------------------------------------------
// fp16

TEST_CASE("format::float_to_half: exact IEEE cases") {
  using format::float_to_half;
  CHECK(format::float_to_half(1.0f) == 0x3C00);
  CHECK(format::float_to_half(-2.0f) == 0xC000);
  CHECK(format::float_to_half(0.0f) == 0x0000);
  CHECK(format::float_to_half(-0.0f) == 0x8000);
  CHECK(format::float_to_half(65504.0f) == 0x7BFF);                                     // largest half
  CHECK(format::float_to_half(std::nextafter(65520.0f, 0.0f)) == 0x7BFF);               // just below the midpoint
  CHECK(format::float_to_half(65520.0f) == 0x7C00);                                     // midpoint: ties to even = inf
  CHECK(format::float_to_half(-65520.0f) == 0xFC00);
  CHECK(format::float_to_half(1e10f) == 0x7C00);
  CHECK(format::float_to_half(std::numeric_limits<float>::infinity()) == 0x7C00);
  CHECK(format::float_to_half(-std::numeric_limits<float>::infinity()) == 0xFC00);
  CHECK(format::float_to_half(std::ldexp(1.0f, -14)) == 0x0400);                        // smallest normal
  CHECK(format::float_to_half(std::ldexp(1023.0f, -24)) == 0x03FF);                     // largest subnormal
  CHECK(format::float_to_half(std::ldexp(1.0f, -24)) == 0x0001);                        // smallest subnormal
  CHECK(format::float_to_half(std::ldexp(1.0f, -25)) == 0x0000);                        // tie between 0 and 1 ulp -> 0
  CHECK(format::float_to_half(std::nextafter(std::ldexp(1.0f, -25), 1.0f)) == 0x0001);  // just above the tie
  CHECK(format::float_to_half(std::ldexp(3.0f, -25)) == 0x0002);                        // tie between 1 and 2 ulp -> 2
  CHECK(format::float_to_half(std::ldexp(5.0f, -25)) == 0x0002);                        // tie between 2 and 3 ulp -> 2
  CHECK(format::float_to_half(std::ldexp(1.0f, -30)) == 0x0000);
  CHECK(format::float_to_half(-std::ldexp(1.0f, -24)) == 0x8001);
  CHECK(format::float_to_half(std::ldexp(2047.0f, -25)) == 0x0400);  // rounds up out of the subnormals
  CHECK(format::float_to_half(1.0f + std::ldexp(1.0f, -11)) == 0x3C00);        // tie, 1.0 is even
  CHECK(format::float_to_half(1.0f + std::ldexp(3.0f, -11)) == 0x3C02);        // tie, rounds up to even
  CHECK(format::float_to_half(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)) == 0x3C01);  // above the tie
  CHECK(format::float_to_half(0.1f) == 0x2E66);

  const uint16_t nan = format::float_to_half(std::numeric_limits<float>::quiet_NaN());
  CHECK((nan & 0x7C00) == 0x7C00);
  CHECK((nan & 0x03FF) != 0);
  const uint16_t signalling = format::float_to_half(std::bit_cast<float>(0x7F800001u));  // payload only in low bits
  CHECK((signalling & 0x7C00) == 0x7C00);
  CHECK((signalling & 0x0200) != 0);  // quiet
}

TEST_CASE("format::half_to_float: every half converts exactly and back") {
  for (uint32_t bits = 0; bits <= 0xFFFF; ++bits) {
    const auto half = static_cast<uint16_t>(bits);
    const float value = format::half_to_float(half);
    const uint32_t exponent = (bits >> 10) & 0x1F, mantissa = bits & 0x3FF;
    if (exponent == 0x1F && mantissa != 0) {
      CHECK(std::isnan(value));
      continue;
    }
    // The value by the IEEE definition, computed independently in double.
    const double magnitude = exponent == 0x1F ? INFINITY
                             : exponent == 0  ? std::ldexp(double(mantissa), -24)
                                              : std::ldexp(double(mantissa + 1024), int(exponent) - 25);
    REQUIRE(double(value) == ((bits & 0x8000) ? -magnitude : magnitude));
    REQUIRE(format::float_to_half(value) == half);
  }
}

TEST_CASE("format::float_to_half rounds to the nearest half") {
  std::mt19937 generator(7);
  std::uniform_int_distribution<uint32_t> exponent(100, 143), mantissa(0, 0x7FFFFF);
  for (int i = 0; i < 200000; ++i) {
    const float value = std::bit_cast<float>((exponent(generator) << 23) | mantissa(generator));
    const uint16_t half = format::float_to_half(value);
    if (value >= 65520.0f) {
      REQUIRE(half == 0x7C00);
      continue;
    }
    const double error = std::abs(double(format::half_to_float(half)) - value);
    // Neither neighbour is closer (the largest half's upper neighbour would be 65536).
    const double below = half > 0 ? std::abs(double(format::half_to_float(uint16_t(half - 1))) - value) : INFINITY;
    const double above = half < 0x7BFF ? std::abs(double(format::half_to_float(uint16_t(half + 1))) - value)
                                       : std::abs(65536.0 - value);
    INFO("value ", value, " half ", half);
    REQUIRE(error <= below);
    REQUIRE(error <= above);
    if (error == below || error == above) REQUIRE((half & 1) == 0);  // a tie went to the even one
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Packing: walk the packed array and derive each element from the layout's definition in format.h.

TEST_CASE("format::pack_conv_kernel: BlockedOHWI [ceil(Cout/16)][KH][KW][Cin][16]") {
  const uint32_t kh = 3, kw = 2, cin = 5, cout = 37;
  const std::vector<float> hwio = random_values(size_t{kh} * kw * cin * cout, 1);
  const std::vector<float> packed = format::pack_conv_kernel(hwio, kh, kw, cin, cout);
  REQUIRE(packed.size() == size_t{3} * kh * kw * cin * 16);
  REQUIRE(packed.size() == format::blocked_ohwi_elements(cout, kh, kw, cin));
  std::set<float> seen;
  for (size_t index = 0; index < packed.size(); ++index) {
    const size_t lane = index % 16, c = index / 16 % cin, x = index / 16 / cin % kw, y = index / 16 / cin / kw % kh;
    const size_t o = index / 16 / cin / kw / kh * 16 + lane;
    if (o >= cout) {
      REQUIRE(packed[index] == 0.0f);
    } else {
      REQUIRE(packed[index] == hwio[((y * kw + x) * cin + c) * cout + o]);
      seen.insert(packed[index]);
    }
  }
  CHECK(seen.size() == std::set<float>(hwio.begin(), hwio.end()).size());  // every input element placed
  CHECK_THROWS_AS(format::pack_conv_kernel(std::span(hwio).first(hwio.size() - 1), kh, kw, cin, cout), Error);
}

TEST_CASE("format::pack_dense_kernel: (in, units) -> BlockedOHWI with KH = KW = 1") {
  const uint32_t in = 7, units = 18;
  const std::vector<float> io = random_values(size_t{in} * units, 2);
  const std::vector<float> packed = format::pack_dense_kernel(io, in, units);
  REQUIRE(packed.size() == size_t{2} * in * 16);
  for (size_t index = 0; index < packed.size(); ++index) {
    const size_t lane = index % 16, i = index / 16 % in, o = index / 16 / in * 16 + lane;
    REQUIRE(packed[index] == (o < units ? io[i * units + o] : 0.0f));
  }
  CHECK_THROWS_AS(format::pack_dense_kernel(io, in + 1, units), Error);
}

TEST_CASE("format::pack_depthwise_kernel: DepthwiseHWC [KH][KW][ceil(Cout/16)*16], o = c * multiplier + m") {
  const uint32_t kh = 3, kw = 3, cin = 6, multiplier = 3, cout = cin * multiplier, padded = 32;
  const std::vector<float> hwcm = random_values(size_t{kh} * kw * cin * multiplier, 3);
  const std::vector<float> packed = format::pack_depthwise_kernel(hwcm, kh, kw, cin, multiplier);
  REQUIRE(packed.size() == size_t{kh} * kw * padded);
  REQUIRE(packed.size() == format::depthwise_hwc_elements(cout, kh, kw));
  for (size_t index = 0; index < packed.size(); ++index) {
    const size_t o = index % padded, x = index / padded % kw, y = index / padded / kw;
    if (o >= cout) {
      REQUIRE(packed[index] == 0.0f);
    } else {
      const size_t c = o / multiplier, m = o % multiplier;  // output channel o reads input channel o / multiplier
      REQUIRE(packed[index] == hwcm[((y * kw + x) * cin + c) * multiplier + m]);
    }
  }
  CHECK_THROWS_AS(format::pack_depthwise_kernel(hwcm, kh, kw, cin + 1, multiplier), Error);
}

TEST_CASE("element counts that overflow are errors") {
  CHECK_THROWS_AS(format::blocked_ohwi_elements(UINT32_MAX, UINT32_MAX, UINT32_MAX, UINT32_MAX), Error);
  CHECK_THROWS_AS(format::depthwise_hwc_elements(UINT32_MAX, UINT32_MAX, UINT32_MAX), Error);
}

// ---------------------------------------------------------------------------------------------------------------
// CRC-32C

TEST_CASE("crc32c: standard check value, chaining, hardware == software") {
  CHECK(effcam::crc32c(as_u8("123456789")) == 0xE3069283u);  // the published CRC-32C check value
  CHECK(effcam::crc32c_software(as_u8("123456789")) == 0xE3069283u);
  CHECK(effcam::crc32c({}) == 0u);
  CHECK(effcam::crc32c(as_u8("56789"), effcam::crc32c(as_u8("1234"))) == 0xE3069283u);

  std::vector<uint8_t> buffer(60000);
  std::mt19937 generator(11);
  for (uint8_t& byte : buffer) byte = static_cast<uint8_t>(generator());
  const std::span<const uint8_t> all(buffer);
  if (!effcam::crc32c_hardware_available()) {
    MESSAGE("SKIP hardware CRC comparison: the CPU has no SSE4.2");
    return;
  }
  for (size_t start = 0; start < 9; ++start) {
    // Lengths around the hardware path's three 8 KiB streams (24 KiB chunks) too.
    for (size_t length : {0, 1, 7, 8, 9, 15, 16, 63, 64, 100, 1000, 24575, 24576, 24583, 49152, 59990}) {
      const auto part = all.subspan(start, length);
      REQUIRE(effcam::crc32c_hardware(part) == effcam::crc32c_software(part));
      REQUIRE(effcam::crc32c_hardware(part, 0x12345678u) == effcam::crc32c_software(part, 0x12345678u));
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// A small model built through the writer.

// The stored bytes of a kernel as the layout and dtype define them.
std::vector<uint8_t> expected_bytes(const std::vector<float>& packed, format::DType dtype) {
  std::vector<uint8_t> bytes;
  if (dtype == format::DType::F16) {
    for (float value : packed) {
      const uint16_t half = format::float_to_half(value);
      bytes.push_back(static_cast<uint8_t>(half & 0xFF));
      bytes.push_back(static_cast<uint8_t>(half >> 8));
    }
  } else {
    bytes.resize(packed.size() * 4);
    std::memcpy(bytes.data(), packed.data(), bytes.size());
  }
  return bytes;
}

void check_weight(const ModelFile& file, uint32_t id, const std::vector<uint8_t>& expected) {
  const format::WeightRecord& record = file.weight_records()[id];
  REQUIRE(record.byte_size == expected.size());
  const auto* data = static_cast<const uint8_t*>(file.weight_data(id));
  CHECK((data - file.bytes().data()) % format::kTensorAlignment == 0);
  CHECK(std::memcmp(data, expected.data(), expected.size()) == 0);
}

void check_round_trip(const SmallModel& model, const ModelFile& file) {
  const auto& builder = model.builder;
  CHECK(file.version() == format::kVersion);
  CHECK(file.kernel_dtype() == builder.kernel_dtype());
  CHECK(file.metadata_json() == model.metadata);
  REQUIRE(file.tensors().size() == builder.tensor_count());
  CHECK(file.string(file.tensors()[0].name) == "input_layer");
  CHECK(file.string(file.tensors()[5].name) == "predictions");
  REQUIRE(file.ops().size() == builder.ops().size());
  CHECK(std::memcmp(file.ops().data(), builder.ops().data(), file.ops().size_bytes()) == 0);
  CHECK(file.string(file.ops()[1].name) == "block1a_dwconv");
  REQUIRE(file.taps().size() == builder.taps().size());
  CHECK(std::memcmp(file.taps().data(), builder.taps().data(), file.taps().size_bytes()) == 0);
  CHECK(file.string(file.taps()[1].class_name) == "Conv2D");
  REQUIRE(file.weight_records().size() == builder.weight_records().size());
  CHECK(std::memcmp(file.weight_records().data(), builder.weight_records().data(),
                    file.weight_records().size_bytes()) == 0);
  CHECK(file.string(file.weight_records()[model.dense_id].name) == "model/predictions/kernel");
  REQUIRE(file.labels().size() == model.labels.size());
  for (size_t i = 0; i < model.labels.size(); ++i) CHECK(file.string(file.labels()[i]) == model.labels[i]);
  CHECK(file.preprocess().height == 224);
  CHECK(file.preprocess().scale[1] == 1.0f / 255.0f);
  CHECK(file.preprocess().output_tensor == 5);

  const auto dtype = builder.kernel_dtype();
  check_weight(file, model.conv_id, expected_bytes(format::pack_conv_kernel(model.conv, 3, 3, 3, 20), dtype));
  check_weight(file, model.depthwise_id,
               expected_bytes(format::pack_depthwise_kernel(model.depthwise, 3, 3, 20, 2), dtype));
  check_weight(file, model.dense_id, expected_bytes(format::pack_dense_kernel(model.dense, 40, 5), dtype));
  check_weight(file, model.bias_id, expected_bytes(model.bias, format::DType::F32));  // vectors stay fp32
  check_weight(file, model.dense_bias_id, expected_bytes(model.dense_bias, format::DType::F32));
  const format::WeightRecord& conv = file.weight_records()[model.conv_id];
  CHECK(conv.layout == format::WeightLayout::BlockedOHWI);
  CHECK((conv.dims[0] == 20 && conv.dims[1] == 3 && conv.dims[2] == 3 && conv.dims[3] == 3));
  const format::WeightRecord& depthwise = file.weight_records()[model.depthwise_id];
  CHECK((depthwise.dims[0] == 40 && depthwise.dims[3] == 1));
  CHECK(file.weight_records()[model.bias_id].dtype == format::DType::F32);
}

format::SectionEntry section(const std::vector<uint8_t>& file, format::SectionKind kind) {
  for (const auto& entry : section_table(file)) {
    if (entry.kind == kind) return entry;
  }
  FAIL("section missing");
  return {};
}

template <class Record>
void edit_record(std::vector<uint8_t>& file, format::SectionKind kind, size_t index, auto&& edit) {
  const auto entry = section(file, kind);
  REQUIRE((index + 1) * sizeof(Record) <= entry.size);
  Record record;
  std::memcpy(&record, file.data() + entry.offset + index * sizeof(Record), sizeof record);
  edit(record);
  std::memcpy(file.data() + entry.offset + index * sizeof(Record), &record, sizeof record);
  reseal(file);
}

void edit_header(std::vector<uint8_t>& file, auto&& edit) {
  format::FileHeader header;
  std::memcpy(&header, file.data(), sizeof header);
  edit(header);
  std::memcpy(file.data(), &header, sizeof header);
}

void edit_section_entry(std::vector<uint8_t>& file, format::SectionKind kind, auto&& edit) {
  auto table = section_table(file);
  for (auto& entry : table) {
    if (entry.kind == kind) edit(entry);
  }
  std::memcpy(file.data() + sizeof(format::FileHeader), table.data(), table.size() * sizeof(format::SectionEntry));
  reseal(file);
}

ModelFile load(const std::vector<uint8_t>& file) { return ModelFile::from_bytes(file); }

const char* const kSectionNames[] = {"Metadata", "Strings", "Preprocess", "Tensors",  "Ops",
                                     "Taps",     "Labels",  "WeightTable", "Weights"};

TEST_CASE("writer -> serialize -> from_bytes round trip") {
  for (format::DType dtype : {format::DType::F16, format::DType::F32}) {
    CAPTURE(static_cast<int>(dtype));
    const SmallModel model(dtype);
    const std::vector<uint8_t> bytes = model.builder.serialize();
    const ModelFile file = ModelFile::from_bytes(bytes);
    CHECK(file.bytes().data() == bytes.data());  // viewed, not copied
    CHECK(file.file_size() == bytes.size());
    check_round_trip(model, file);

    // Layout rules: page-aligned Weights, 64-byte aligned sections inside the file, none overlapping.
    const auto table = section_table(bytes);
    REQUIRE(table.size() == format::kSectionKindCount);
    for (const auto& entry : table) {
      CHECK(entry.offset % 64 == 0);
      CHECK(entry.offset + entry.size <= bytes.size());
    }
    CHECK(section(bytes, format::SectionKind::Weights).offset % format::kWeightsAlignment == 0);

    ModelFile moved = ModelFile::from_bytes(bytes);
    ModelFile target = std::move(moved);
    CHECK(target.ops().size() == 4);
  }
}

TEST_CASE("builder: interning and input checks") {
  effcam::converter::EffcamBuilder builder(format::DType::F16);
  const auto first = builder.add_string("stem_conv");
  const auto again = builder.add_string("stem_conv");
  CHECK((first.offset == again.offset && first.length == again.length));
  CHECK(builder.add_string("other").offset == first.offset + first.length);
  const std::vector<float> values(12, 1.0f);
  CHECK_THROWS_AS(builder.add_conv_kernel("k", values, 3, 3, 1, 2), Error);  // 12 values for 18
  CHECK_THROWS_AS(builder.add_vector("empty", {}), Error);                    // zero-length dims
  CHECK_THROWS_AS(effcam::converter::EffcamBuilder(static_cast<format::DType>(7)), Error);
}

TEST_CASE("a model without weights, ops, taps, labels or metadata loads (empty sections)") {
  effcam::converter::EffcamBuilder builder(format::DType::F16);
  format::Preprocess preprocess{};
  preprocess.height = preprocess.width = 1;
  preprocess.channels = 1;
  preprocess.resize = format::ResizeFilter::Lanczos3;
  preprocess.input_tensor = preprocess.output_tensor = builder.add_tensor("input");
  builder.set_preprocess(preprocess);
  const std::vector<uint8_t> bytes = builder.serialize();
  const ModelFile file = ModelFile::from_bytes(bytes);
  CHECK(file.ops().empty());
  CHECK(file.labels().empty());
  CHECK(file.weight_records().empty());
  CHECK(file.metadata_json().empty());
  CHECK(file.kernel_dtype() == format::DType::F32);
  CHECK_THROWS_AS(file.weight_data(0), Error);
  CHECK(file.string(file.tensors()[0].name) == "input");
}

TEST_CASE("write() and open() a file") {
  const SmallModel model(format::DType::F16);
  const std::filesystem::path path = effcam::test::testdata_dir() / "format_small.effcam";
  const uint64_t written = model.builder.write(path.string());
  CHECK(written == std::filesystem::file_size(path));
  CHECK(!std::filesystem::exists(path.string() + ".tmp"));
  {
    const ModelFile file = ModelFile::open(path.string());
    check_round_trip(model, file);
  }

  const std::string missing_dir = (effcam::test::testdata_dir() / "no-such-dir" / "x.effcam").string();
  CHECK_ERROR_CONTAINS(model.builder.write(missing_dir), missing_dir);
  CHECK_ERROR_CONTAINS(model.builder.write(missing_dir), "No such file or directory");
  CHECK(!std::filesystem::exists(missing_dir + ".tmp"));

  const std::string absent = (effcam::test::testdata_dir() / "absent.effcam").string();
  CHECK_ERROR_CONTAINS(ModelFile::open(absent), absent + ": cannot open");

  // A corrupt file on disk: the message starts with its path.
  std::vector<uint8_t> bytes = model.builder.serialize();
  bytes[section(bytes, format::SectionKind::Weights).offset + 10] ^= 0x40;
  const std::filesystem::path corrupt = effcam::test::testdata_dir() / "format_corrupt.effcam";
  std::ofstream(corrupt, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  CHECK_ERROR_CONTAINS(ModelFile::open(corrupt.string()), corrupt.string() + ": checksum mismatch in section Weights");
  std::ofstream(corrupt, std::ios::binary | std::ios::trunc).flush();
  CHECK_ERROR_CONTAINS(ModelFile::open(corrupt.string()), corrupt.string() + ": empty file");
}

TEST_CASE("corrupt files: truncation and trailing bytes") {
  const SmallModel model(format::DType::F16);
  const std::vector<uint8_t> good = model.builder.serialize();
  std::set<size_t> lengths;
  for (size_t i = 0; i < 50; ++i) lengths.insert(good.size() * i / 50);
  for (size_t length : {size_t{1}, size_t{63}, size_t{64}, size_t{65}, good.size() - 1}) lengths.insert(length);
  for (const auto& entry : section_table(good)) {
    for (uint64_t boundary : {entry.offset, entry.offset + entry.size}) {
      for (uint64_t length : {boundary - 1, boundary, boundary + 1}) {
        if (length < good.size()) lengths.insert(length);
      }
    }
  }
  for (size_t length : lengths) {
    CAPTURE(length);
    const std::vector<uint8_t> cut(good.begin(), good.begin() + std::ptrdiff_t(length));
    CHECK_ERROR_CONTAINS(load(cut), length == 0 ? "empty file" : "truncated");
  }
  std::vector<uint8_t> longer = good;
  longer.resize(good.size() + 10, 0);
  CHECK_ERROR_CONTAINS(load(longer), "has 10 trailing bytes");
  CHECK_ERROR_CONTAINS(load({}), "empty file");
  CHECK_ERROR_CONTAINS(load({'E'}), "truncated");
}

TEST_CASE("corrupt files: flipped bytes") {
  const SmallModel model(format::DType::F16);
  const std::vector<uint8_t> good = model.builder.serialize();
  REQUIRE_NOTHROW(load(good));
  for (const auto& entry : section_table(good)) {
    const char* name = kSectionNames[static_cast<uint32_t>(entry.kind) - 1];
    CAPTURE(name);
    REQUIRE(entry.size > 0);  // the small model fills every section
    for (uint64_t position : {entry.offset, entry.offset + entry.size / 2, entry.offset + entry.size - 1}) {
      std::vector<uint8_t> bad = good;
      bad[position] ^= 0x01;
      CHECK_ERROR_CONTAINS(load(bad), std::string("checksum mismatch in section ") + name);
    }
  }
  // Header fields without their own check, the checksum itself, and every byte of the section table.
  std::vector<size_t> positions = {offsetof(format::FileHeader, header_checksum),
                                   offsetof(format::FileHeader, channel_block),
                                   offsetof(format::FileHeader, reserved) + 5};
  for (size_t p = sizeof(format::FileHeader); p < sizeof(format::FileHeader) + 9 * 32; ++p) positions.push_back(p);
  for (size_t position : positions) {
    CAPTURE(position);
    std::vector<uint8_t> bad = good;
    bad[position] ^= 0x80;
    CHECK_ERROR_CONTAINS(load(bad), "header checksum mismatch");
  }
}

TEST_CASE("corrupt files: header") {
  const SmallModel model(format::DType::F16);
  const std::vector<uint8_t> good = model.builder.serialize();

  std::vector<uint8_t> bad = good;
  bad[1] = 'X';
  CHECK_ERROR_CONTAINS(load(bad), "bad magic");

  bad = good;
  edit_header(bad, [](format::FileHeader& h) { h.version = 2; });
  reseal(bad);
  CHECK_ERROR_CONTAINS(load(bad), "file version 2, this effcam reads version 1");

  bad = good;
  edit_header(bad, [](format::FileHeader& h) { h.endian_tag = 0x04030201; });
  reseal(bad);
  CHECK_ERROR_CONTAINS(load(bad), "big-endian");

  bad = good;
  edit_header(bad, [](format::FileHeader& h) { h.endian_tag = 0x11223344; });
  CHECK_ERROR_CONTAINS(load(bad), "bad endian tag 0x11223344");

  bad = good;
  edit_header(bad, [](format::FileHeader& h) { h.channel_block = 8; });
  reseal(bad);
  CHECK_ERROR_CONTAINS(load(bad), "channel block 8");

  bad = good;
  edit_header(bad, [&](format::FileHeader& h) { h.file_size = good.size() + 4096; });
  CHECK_ERROR_CONTAINS(load(bad), "truncated");

  bad = good;
  edit_header(bad, [](format::FileHeader& h) { h.section_count = 1u << 30; });
  CHECK_ERROR_CONTAINS(load(bad), "section table (1073741824 entries) runs past the end of the file");

  // Misaligned buffers cannot be viewed in place.
  std::vector<uint8_t> shifted(good.size() + 1);
  std::memcpy(shifted.data() + 1, good.data(), good.size());
  CHECK_ERROR_CONTAINS(ModelFile::from_bytes(std::span<const uint8_t>(shifted).subspan(1)), "not 8-byte aligned");
}

TEST_CASE("corrupt files: section table") {
  using format::SectionKind;
  const SmallModel model(format::DType::F16);
  const std::vector<uint8_t> good = model.builder.serialize();
  const uint64_t size = good.size();

  std::vector<uint8_t> bad = good;
  edit_section_entry(bad, SectionKind::Weights, [&](format::SectionEntry& e) { e.offset = size + 4096; });
  CHECK_ERROR_CONTAINS(load(bad), "section Weights (offset");
  CHECK_ERROR_CONTAINS(load(bad), "runs past the end of the file");

  bad = good;
  edit_section_entry(bad, SectionKind::Ops, [](format::SectionEntry& e) { e.size = UINT64_MAX - 10; });
  CHECK_ERROR_CONTAINS(load(bad), "section Ops (offset");

  bad = good;
  const uint64_t tensors_offset = section(good, SectionKind::Tensors).offset;
  edit_section_entry(bad, SectionKind::Ops, [&](format::SectionEntry& e) { e.offset = tensors_offset; });
  CHECK_ERROR_CONTAINS(load(bad), "overlap");

  bad = good;
  edit_section_entry(bad, SectionKind::Ops, [](format::SectionEntry& e) { e.offset += 8; });
  CHECK_ERROR_CONTAINS(load(bad), "section Ops offset");
  CHECK_ERROR_CONTAINS(load(bad), "not 64-byte aligned");

  bad = good;
  edit_section_entry(bad, SectionKind::Weights, [](format::SectionEntry& e) { e.offset -= 64; });
  CHECK_ERROR_CONTAINS(load(bad), "not 4096-byte aligned");

  bad = good;
  edit_section_entry(bad, SectionKind::Metadata, [](format::SectionEntry& e) { e.offset = 64; });
  CHECK_ERROR_CONTAINS(load(bad), "overlaps the header or section table");

  bad = good;
  edit_section_entry(bad, SectionKind::Taps, [](format::SectionEntry& e) { e.kind = SectionKind::Ops; });
  CHECK_ERROR_CONTAINS(load(bad), "section Ops appears twice");

  bad = good;
  edit_section_entry(bad, SectionKind::Taps, [](format::SectionEntry& e) { e.kind = static_cast<SectionKind>(42); });
  CHECK_ERROR_CONTAINS(load(bad), "unknown section kind 42");

  bad = good;
  edit_section_entry(bad, SectionKind::Ops, [](format::SectionEntry& e) { e.size -= 4; });
  CHECK_ERROR_CONTAINS(load(bad), "section Ops has");
  CHECK_ERROR_CONTAINS(load(bad), "not a whole number of 128-byte records");
}

TEST_CASE("corrupt files: records") {
  using format::SectionKind;
  const SmallModel model(format::DType::F16);
  const std::vector<uint8_t> good = model.builder.serialize();

  // A kernel whose dims imply 10 GB: consistent byte_size, but far past the Weights section.
  std::vector<uint8_t> bad = good;
  edit_record<format::WeightRecord>(bad, SectionKind::WeightTable, model.conv_id, [](format::WeightRecord& r) {
    r.dims[0] = 8192, r.dims[1] = 3, r.dims[2] = 3, r.dims[3] = 70000;
    r.byte_size = uint64_t{8192} * 3 * 3 * 70000 * 2;
  });
  CHECK_ERROR_CONTAINS(load(bad), "weight 0 (model/stem_conv/kernel)");
  CHECK_ERROR_CONTAINS(load(bad), "run past the Weights section");

  bad = good;
  edit_record<format::WeightRecord>(bad, SectionKind::WeightTable, model.conv_id,
                                    [](format::WeightRecord& r) { r.dims[0] = 8192; });
  CHECK_ERROR_CONTAINS(load(bad), "does not match its dims");

  bad = good;
  edit_record<format::WeightRecord>(bad, SectionKind::WeightTable, model.conv_id,
                                    [](format::WeightRecord& r) { r.dims[3] = 0; });
  CHECK_ERROR_CONTAINS(load(bad), "dim 3 is 0");

  bad = good;
  edit_record<format::WeightRecord>(bad, SectionKind::WeightTable, model.bias_id,
                                    [](format::WeightRecord& r) { r.dtype = format::DType::F16; r.byte_size /= 2; });
  CHECK_ERROR_CONTAINS(load(bad), "a Vector weight must be F32");

  bad = good;
  edit_record<format::WeightRecord>(bad, SectionKind::WeightTable, model.bias_id,
                                    [](format::WeightRecord& r) { r.layout = static_cast<format::WeightLayout>(9); });
  CHECK_ERROR_CONTAINS(load(bad), "unknown layout 9");

  bad = good;
  edit_record<format::WeightRecord>(bad, SectionKind::WeightTable, model.bias_id,
                                    [](format::WeightRecord& r) { r.offset += 4; });
  CHECK_ERROR_CONTAINS(load(bad), "not 64-byte aligned");

  bad = good;
  edit_record<format::ActivationTensor>(bad, SectionKind::Tensors, 2,
                                        [](format::ActivationTensor& t) { t.name.offset = 100000; });
  CHECK_ERROR_CONTAINS(load(bad), "tensor 2: string (offset 100000");
  CHECK_ERROR_CONTAINS(load(bad), "outside the Strings section");

  bad = good;
  edit_record<format::StringRef>(bad, SectionKind::Labels, 1, [](format::StringRef& s) { s.length = UINT32_MAX; });
  CHECK_ERROR_CONTAINS(load(bad), "label 1: string");

  bad = good;
  edit_record<format::Op>(bad, SectionKind::Ops, 1, [](format::Op& op) { op.inputs[0] = 999; });
  CHECK_ERROR_CONTAINS(load(bad), "op 1 (block1a_dwconv): input 0 tensor is 999, only 6 exist");

  bad = good;
  edit_record<format::Op>(bad, SectionKind::Ops, 0, [](format::Op& op) { op.outputs[0] = format::kNone; });
  CHECK_ERROR_CONTAINS(load(bad), "op 0 (stem_conv): output 0 tensor is missing");

  bad = good;
  edit_record<format::Op>(bad, SectionKind::Ops, 3, [](format::Op& op) { op.bias = 5; });
  CHECK_ERROR_CONTAINS(load(bad), "op 3 (predictions): bias id is 5, only 5 exist");

  bad = good;
  edit_record<format::Op>(bad, SectionKind::Ops, 2, [](format::Op& op) { op.kind = static_cast<format::OpKind>(0); });
  CHECK_ERROR_CONTAINS(load(bad), "unknown op kind 0");

  bad = good;
  edit_record<format::Op>(bad, SectionKind::Ops, 2,
                          [](format::Op& op) { op.activation2 = static_cast<format::Activation>(77); });
  CHECK_ERROR_CONTAINS(load(bad), "unknown activation 77");

  bad = good;
  edit_record<format::Tap>(bad, SectionKind::Taps, 1, [](format::Tap& tap) { tap.op = 4; });
  CHECK_ERROR_CONTAINS(load(bad), "tap 1: op is 4, only 4 exist");

  bad = good;
  edit_record<format::Tap>(bad, SectionKind::Taps, 0,
                           [](format::Tap& tap) { tap.kind = static_cast<format::TapKind>(99); });
  CHECK_ERROR_CONTAINS(load(bad), "unknown tap kind 99");

  bad = good;
  edit_record<format::Preprocess>(bad, SectionKind::Preprocess, 0, [](format::Preprocess& p) { p.channels = 2; });
  CHECK_ERROR_CONTAINS(load(bad), "preprocess: 2 channels");

  bad = good;
  edit_record<format::Preprocess>(bad, SectionKind::Preprocess, 0, [](format::Preprocess& p) { p.width = 10000; });
  CHECK_ERROR_CONTAINS(load(bad), "preprocess: input size 224x10000");

  bad = good;
  edit_record<format::Preprocess>(bad, SectionKind::Preprocess, 0,
                                  [](format::Preprocess& p) { p.offset[2] = std::numeric_limits<float>::quiet_NaN(); });
  CHECK_ERROR_CONTAINS(load(bad), "not finite");

  bad = good;
  edit_record<format::Preprocess>(bad, SectionKind::Preprocess, 0,
                                  [](format::Preprocess& p) { p.resize = static_cast<format::ResizeFilter>(3); });
  CHECK_ERROR_CONTAINS(load(bad), "unknown resize filter 3");
}

}  // namespace
