// The .effcam file format: the on-disk records shared by the converter (writer) and the engine (loader).
//
// Layout (all little-endian, see docs/file-format.md):
//   FileHeader                       at offset 0
//   SectionEntry[section_count]      right after the header
//   sections                         each 64-byte aligned; the Weights section is page (4096) aligned
//
// Every record is a fixed-size POD so the loader can validate counts and sizes, then view the mmap'd bytes
// in place. Strings live in the Strings section and are referenced by StringRef (offset + length).
#pragma once

#include <cstdint>

namespace effcam::format {

inline constexpr char kMagic[8] = {'E', 'F', 'F', 'C', 'A', 'M', '\0', '\x1a'};
inline constexpr uint32_t kVersion = 1;
inline constexpr uint32_t kEndianTag = 0x01020304;  // reads 0x04030201 on a big-endian machine
inline constexpr uint32_t kNone = 0xFFFFFFFFu;       // "no tensor / no weight / no op"
inline constexpr uint64_t kWeightsAlignment = 4096;  // the Weights section starts on a page
inline constexpr uint64_t kTensorAlignment = 64;     // every weight tensor starts on a cache line
// Output channels are stored in blocks of this many (zero-padded): one AVX-512 vector of fp32.
inline constexpr uint32_t kChannelBlock = 16;

enum class SectionKind : uint32_t {
  Metadata = 1,    // UTF-8 JSON text: converter summary (source format, Keras version, counts)
  Strings = 2,     // raw bytes referenced by StringRef
  Preprocess = 3,  // one Preprocess record
  Tensors = 4,     // ActivationTensor[]  (graph values; id = index)
  Ops = 5,         // Op[]                (execution order)
  Taps = 6,        // Tap[]               (Keras layer name -> where its output can be read)
  Labels = 7,      // StringRef[]         (one per class, may be empty)
  WeightTable = 8, // WeightRecord[]      (id = index)
  Weights = 9,     // raw tensor bytes, page aligned
};
inline constexpr uint32_t kSectionKindCount = 9;

struct FileHeader {  // 64 bytes
  char magic[8];
  uint32_t version;
  uint32_t endian_tag;
  uint64_t file_size;       // total bytes; a shorter file is truncated
  uint32_t section_count;
  uint32_t header_checksum; // CRC-32C of the header (with this field zero) and the section entries
  uint32_t channel_block;   // == kChannelBlock
  uint32_t reserved[7];
};
static_assert(sizeof(FileHeader) == 64);

struct SectionEntry {  // 32 bytes
  SectionKind kind;
  uint32_t checksum;  // CRC-32C of the section's bytes
  uint64_t offset;
  uint64_t size;
  uint64_t reserved;
};
static_assert(sizeof(SectionEntry) == 32);

struct StringRef {
  uint32_t offset;  // into the Strings section
  uint32_t length;
};

enum class ResizeFilter : uint32_t { Lanczos3 = 1 };

// What the Keras model does to a raw 0..255 image, up to its first non-affine layer:
// x[c] = pixel[c] * scale[c] + offset[c]  (leading Rescaling / Normalization layers folded, in double).
struct Preprocess {
  uint32_t height;
  uint32_t width;
  uint32_t channels;  // 1 (grayscale) or 3 (RGB)
  ResizeFilter resize;
  float scale[4];
  float offset[4];
  uint32_t input_tensor;  // activation tensor id of the graph input (after the folded affine)
  uint32_t output_tensor; // activation tensor id of the model output
  uint32_t reserved[2];
};

struct ActivationTensor {
  StringRef name;  // the Keras layer whose output it is (qualified "base/layer" inside nested models)
};

enum class DType : uint32_t { F32 = 1, F16 = 2 };

enum class WeightLayout : uint32_t {
  // Vector of length dims[0] (biases, per-channel scales); always F32, whatever the file's dtype.
  Vector = 1,
  // Dense / Conv kernel for output-channel-blocked kernels. Logical dims = {Cout, KH, KW, Cin};
  // stored as [ceil(Cout/16)][KH][KW][Cin][16], padded output channels are zero.
  // A Dense layer is KH = KW = 1 with Cin = its input length (NHWC flatten order).
  BlockedOHWI = 2,
  // Depthwise kernel. Logical dims = {Cout = Cin*multiplier, KH, KW}; stored as [KH][KW][ceil(Cout/16)*16],
  // output channel o reads input channel o / multiplier.
  DepthwiseHWC = 3,
};

struct WeightRecord {  // 64 bytes
  StringRef name;      // e.g. "efficientnetv2-s/block4a_project_conv/kernel"
  DType dtype;
  WeightLayout layout;
  uint32_t dims[4];    // logical dims, unused trailing ones are 1
  uint64_t offset;     // from the start of the Weights section, kTensorAlignment aligned
  uint64_t byte_size;  // stored bytes (including channel padding)
  uint32_t reserved[4];
};
static_assert(sizeof(WeightRecord) == 64);

enum class OpKind : uint32_t {
  // y = act(conv(x (.) input_scale) + bias) [+ residual]. Dense, groups = 1, any kernel and stride.
  // inputs: {x, residual|kNone, input_scale (1x1xCin)|kNone}
  Conv = 1,
  // y = act(depthwise(x) + bias); outputs[1] (optional) = spatial mean of y per channel (1x1xC).
  // inputs: {x}
  Depthwise = 2,
  // gate = act2(W2 . act(W1 . m + b1) + b2) on a 1x1xC mean; weight/bias = W1/b1, weight2/bias2 = W2/b2.
  // inputs: {m}
  SqueezeExcite = 3,
  // y = act(W . flatten(x) + b). inputs: {x}
  Dense = 4,
  // y = act(x * scale[c] + bias[c]) [+ residual]; scale/bias optional (kNone = 1 / 0).
  // inputs: {x, residual|kNone}
  ChannelAffine = 5,
  // y = act(a + b). inputs: {a, b}, same shape
  Add = 6,
  // y = act(a * b), b has the same shape as a or is 1x1xC (broadcast). inputs: {a, b}
  Multiply = 7,
  GlobalAvgPool = 8,  // y[0,0,c] = mean over H, W.  inputs: {x}
  MaxPool = 9,        // window kernel_h x kernel_w, stride, padding like Conv. inputs: {x}
  AvgPool = 10,       // TF semantics: padded positions are not counted. inputs: {x}
  ZeroPad = 11,       // explicit pad_* only. inputs: {x}
  Reshape = 12,       // same bytes, new dims {target_h, target_w, target_c} (params[0..2]). inputs: {x}
};

enum class Activation : uint32_t {
  Linear = 0,
  Relu = 1,         // min(max(x, 0), params.act_max) with act_max = +inf for plain relu; relu6 -> 6
  Sigmoid = 2,
  Swish = 3,        // x * sigmoid(x)  (Keras "swish" == "silu")
  HardSigmoid = 4,  // Keras 3: relu6(x + 3) / 6
  HardSigmoidKeras2 = 5,  // Keras 2: clip(0.2 x + 0.5, 0, 1)
  HardSwish = 6,    // x * relu6(x + 3) / 6
  Tanh = 7,
  Softmax = 8,      // over the channels of a 1x1xC (or flat) tensor
};

enum class Padding : uint32_t {
  Valid = 0,
  Same = 1,  // TensorFlow rule: out = ceil(in / stride), odd total padding goes bottom/right
};

inline constexpr uint32_t kMaxOpInputs = 3;
inline constexpr uint32_t kMaxOpOutputs = 2;

struct Op {  // 128 bytes
  OpKind kind;
  Activation activation;
  Activation activation2;  // SqueezeExcite: the gate's activation
  Padding padding;
  StringRef name;          // Keras layer name of the op's main (first fused) layer
  uint32_t inputs[kMaxOpInputs];    // activation tensor ids or kNone
  uint32_t outputs[kMaxOpOutputs];  // activation tensor ids or kNone
  uint32_t kernel_h, kernel_w;
  uint32_t stride_h, stride_w;
  uint32_t pad_top, pad_bottom, pad_left, pad_right;  // explicit zero padding applied before `padding`
  uint32_t weight, bias;    // weight table ids or kNone
  uint32_t weight2, bias2;  // SqueezeExcite second layer; ChannelAffine: weight = scale
  uint32_t out_channels;    // Conv/Dense/SE: units; Depthwise: Cin * multiplier
  uint32_t reshape[3];      // Reshape target {h, w, c}
  float act_max;            // Relu upper clip (+inf when unbounded)
  uint32_t reserved[4];
};
static_assert(sizeof(Op) == 128);

// Where a Keras layer's own output can be recovered from the fused graph (Grad-CAM targets, parity probes).
enum class TapKind : uint32_t {
  Output = 1,          // the op's output tensor, exactly
  BeforeResidual = 2,  // the op's result before its residual add: act(conv + bias)
  BeforeActivation = 3,// conv + bias (the folded BatchNorm's output) before the activation
  BeforeAffine = 4,    // the raw conv output before a folded BatchNorm: conv_without_bias / scale + shift,
                       // scale = the folded per-channel factor, shift = the layer's own bias (kNone: none);
                       // both F32 Vectors of the op's output channels
  ScaledInput = 5,     // the op's input times its input_scale (a squeeze-excite Multiply folded into Conv)
  SecondOutput = 6,    // the op's outputs[1] (a squeeze-excite mean computed by a Depthwise op)
};

struct Tap {
  StringRef layer;       // Keras layer name, qualified inside nested models ("base/layer")
  StringRef class_name;  // Keras class, e.g. "Conv2D"
  TapKind kind;
  uint32_t op;           // index into Ops
  uint32_t scale, shift; // BeforeAffine only (shift may be kNone), else kNone
};

}  // namespace effcam::format
