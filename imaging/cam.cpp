#include "imaging/cam.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <string>
#include <utility>

#include "effcam/error.hpp"

namespace effcam::imaging {
namespace {

constexpr std::array<std::pair<CamMethod, std::string_view>, 6> kMethodNames = {{
    {CamMethod::GradCam, "gradcam"},
    {CamMethod::GradCamPlusPlus, "gradcam++"},
    {CamMethod::HiResCam, "hirescam"},
    {CamMethod::XGradCam, "xgradcam"},
    {CamMethod::LayerCam, "layercam"},
    {CamMethod::EigenCam, "eigencam"},
}};

// pytorch-grad-cam's epsilons (grad_cam_plusplus.py, xgrad_cam.py).
constexpr double kGradCamPlusPlusEps = 1e-6;
constexpr double kXGradCamEps = 1e-7;

// EigenCam's power iteration stops when the unit direction moves less than this, or after kEigenMaxIterations:
// convergence goes as (s1/s0)^2 per step, so the cap only binds when the top two singular values (nearly) tie,
// where every direction in their plane is an equally valid first component.
constexpr double kEigenTolerance = 1e-12;
constexpr int kEigenMaxIterations = 1000;
// EigenCam's scratch is a min(H*W, C)^2 Gram matrix of doubles: at most 8 MiB. Every EfficientNetV2 layer at its
// native resolution fits (the widest case, V2-L's 30x30x1344 expansion, needs 900).
constexpr size_t kEigenMaxGramSide = 1024;

// The inputs as a positions x channels matrix (HWC puts a position's channels side by side).
struct Tensor {
  std::span<const float> data;
  size_t positions;
  size_t channels;
  double at(size_t p, size_t k) const { return data[p * channels + k]; }
};

std::vector<double> channel_sums(const Tensor& a) {
  std::vector<double> sums(a.channels, 0.0);
  for (size_t p = 0; p < a.positions; ++p)
    for (size_t k = 0; k < a.channels; ++k) sums[k] += a.at(p, k);
  return sums;
}

// w_k of the methods whose map is sum_k w_k A_k.
std::vector<double> channel_weights(CamMethod method, const Tensor& a, const Tensor& g) {
  std::vector<double> weights(a.channels, 0.0);
  if (method == CamMethod::GradCam) {
    for (size_t p = 0; p < a.positions; ++p)
      for (size_t k = 0; k < a.channels; ++k) weights[k] += g.at(p, k);
    for (double& w : weights) w /= static_cast<double>(a.positions);
    return weights;
  }
  const std::vector<double> activation_sums = channel_sums(a);
  for (size_t p = 0; p < a.positions; ++p) {
    for (size_t k = 0; k < a.channels; ++k) {
      const double grad = g.at(p, k);
      if (method == CamMethod::XGradCam) {
        weights[k] += grad * a.at(p, k);
      } else if (grad != 0.0) {  // GradCamPlusPlus: alpha is 0 where the gradient is
        const double grad2 = grad * grad;
        const double alpha = grad2 / (2.0 * grad2 + activation_sums[k] * grad2 * grad + kGradCamPlusPlusEps);
        weights[k] += std::max(grad, 0.0) * alpha;
      }
    }
  }
  if (method == CamMethod::XGradCam)
    for (size_t k = 0; k < a.channels; ++k) weights[k] /= activation_sums[k] + kXGradCamEps;
  return weights;
}

std::vector<double> weighted_sum(const Tensor& a, const std::vector<double>& weights) {
  std::vector<double> map(a.positions, 0.0);
  for (size_t p = 0; p < a.positions; ++p)
    for (size_t k = 0; k < a.channels; ++k) map[p] += weights[k] * a.at(p, k);
  return map;
}

// HiResCam (factor = G) and LayerCam (factor = relu(G)): sum_k factor * A_k at each position.
std::vector<double> elementwise_sum(const Tensor& a, const Tensor& g, bool relu_gradient) {
  std::vector<double> map(a.positions, 0.0);
  for (size_t p = 0; p < a.positions; ++p) {
    for (size_t k = 0; k < a.channels; ++k) {
      const double grad = relu_gradient ? std::max(g.at(p, k), 0.0) : g.at(p, k);
      map[p] += grad * a.at(p, k);
    }
  }
  return map;
}

// The centred activations M (A minus each channel's mean, non-finite A read as 0, as get_2d_projection zeroes
// NaNs), read straight from A rather than stored.
class CenteredActivations {
 public:
  explicit CenteredActivations(const Tensor& a) : a_(a), means_(a.channels, 0.0) {
    for (size_t p = 0; p < a.positions; ++p)
      for (size_t k = 0; k < a.channels; ++k) means_[k] += value(p, k);
    for (double& m : means_) m /= static_cast<double>(a.positions);
  }
  size_t positions() const { return a_.positions; }
  size_t channels() const { return a_.channels; }
  double at(size_t p, size_t k) const { return value(p, k) - means_[k]; }
  void row(size_t p, double* out) const {
    for (size_t k = 0; k < a_.channels; ++k) out[k] = at(p, k);
  }
  // sum_k A_k at each position: the sign reference of the projection
  std::vector<double> channel_sum_map() const {
    std::vector<double> map(a_.positions, 0.0);
    for (size_t p = 0; p < a_.positions; ++p)
      for (size_t k = 0; k < a_.channels; ++k) map[p] += value(p, k);
    return map;
  }

 private:
  double value(size_t p, size_t k) const {
    const double x = a_.at(p, k);
    return std::isfinite(x) ? x : 0.0;
  }
  Tensor a_;
  std::vector<double> means_;
};

// Four partial sums break the chain of dependent additions (a 3-4x speed-up for EigenCam's Gram matrix).
double dot(const double* a, const double* b, size_t n) {
  double partial[4] = {0.0, 0.0, 0.0, 0.0};
  size_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (size_t lane = 0; lane < 4; ++lane) partial[lane] += a[i + lane] * b[i + lane];
  for (; i < n; ++i) partial[0] += a[i] * b[i];
  return (partial[0] + partial[1]) + (partial[2] + partial[3]);
}

// The smaller Gram matrix of M, n x n row-major: M M^T over positions when there are no more positions than
// channels, else M^T M over channels. Both share M's non-zero singular values; the first has U, the second V
// as eigenvectors.
std::vector<double> gram_matrix(const CenteredActivations& m, bool over_positions) {
  const size_t n = over_positions ? m.positions() : m.channels();
  const size_t channels = m.channels();
  std::vector<double> gram(n * n, 0.0);
  if (over_positions) {
    // Dot products of centred rows; a block of rows is kept centred so that each other row is centred once per
    // block instead of once per entry.
    constexpr size_t kBlockRows = 32;
    std::vector<double> block(kBlockRows * channels), row(channels);
    for (size_t first = 0; first < n; first += kBlockRows) {
      const size_t rows = std::min(kBlockRows, n - first);
      for (size_t r = 0; r < rows; ++r) m.row(first + r, &block[r * channels]);
      for (size_t j = 0; j < first + rows; ++j) {
        m.row(j, row.data());
        for (size_t r = std::max(first, j) - first; r < rows; ++r)
          gram[(first + r) * n + j] = dot(&block[r * channels], row.data(), channels);
      }
    }
  } else {
    std::vector<double> row(channels);
    for (size_t p = 0; p < m.positions(); ++p) {
      m.row(p, row.data());
      for (size_t i = 0; i < n; ++i)
        for (size_t j = 0; j <= i; ++j) gram[i * n + j] += row[i] * row[j];
    }
  }
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < i; ++j) gram[j * n + i] = gram[i * n + j];
  return gram;
}

void multiply(const std::vector<double>& matrix, const std::vector<double>& x, std::vector<double>& out) {
  const size_t n = x.size();
  for (size_t i = 0; i < n; ++i) out[i] = dot(&matrix[i * n], x.data(), n);
}

double norm(const std::vector<double>& v) {
  double sum = 0.0;
  for (double x : v) sum += x * x;
  return std::sqrt(sum);
}

// The unit eigenvector of the largest eigenvalue of a PSD Gram matrix, by power iteration started from the
// column with the largest diagonal entry (in the range, and non-zero whenever the matrix is); empty when the
// matrix is zero. (Should a step still vanish numerically, its NaNs end as an empty map in finish().)
std::vector<double> top_eigenvector(const std::vector<double>& gram, size_t n) {
  size_t pivot = 0;
  for (size_t i = 1; i < n; ++i)
    if (gram[i * n + i] > gram[pivot * n + pivot]) pivot = i;
  if (!(gram[pivot * n + pivot] > 0.0)) return {};
  std::vector<double> x(n), next(n);
  for (size_t i = 0; i < n; ++i) x[i] = gram[i * n + pivot];
  const double start_length = norm(x);
  for (double& value : x) value /= start_length;
  for (int iteration = 0; iteration < kEigenMaxIterations; ++iteration) {
    multiply(gram, x, next);
    const double length = norm(next);
    double change = 0.0;
    for (size_t i = 0; i < n; ++i) {
      next[i] /= length;
      change += (next[i] - x[i]) * (next[i] - x[i]);
    }
    x.swap(next);
    if (change < kEigenTolerance * kEigenTolerance) break;
  }
  return x;
}

// M v0 with v0 the first right singular vector of M, sign-fixed to correlate positively with sum_k A_k.
std::vector<double> eigen_projection(const Tensor& a, const std::string& what) {
  const CenteredActivations m(a);
  const bool over_positions = a.positions <= a.channels;
  const size_t n = over_positions ? a.positions : a.channels;
  if (n > kEigenMaxGramSide)
    throw Error(what + ": min(H*W, C) = " + std::to_string(n) + " is above " + std::to_string(kEigenMaxGramSide) +
                ", the largest Gram matrix it builds");
  const std::vector<double> gram = gram_matrix(m, over_positions);
  const std::vector<double> eigenvector = top_eigenvector(gram, n);
  std::vector<double> projection(a.positions, 0.0);
  if (eigenvector.empty()) return projection;  // M = 0: every position alike, no component at all
  if (over_positions) {
    // eigenvector = u0, and M v0 = s0 u0 with s0^2 = u0^T (M M^T) u0.
    std::vector<double> gram_u(n);
    multiply(gram, eigenvector, gram_u);
    double s0_squared = 0.0;
    for (size_t i = 0; i < n; ++i) s0_squared += eigenvector[i] * gram_u[i];
    const double s0 = std::sqrt(std::max(s0_squared, 0.0));
    for (size_t p = 0; p < n; ++p) projection[p] = s0 * eigenvector[p];
  } else {
    for (size_t p = 0; p < a.positions; ++p)
      for (size_t k = 0; k < n; ++k) projection[p] += m.at(p, k) * eigenvector[k];
  }
  const std::vector<double> reference = m.channel_sum_map();
  double correlation = 0.0;  // the projection has zero mean, so this is its covariance with the reference
  for (size_t p = 0; p < a.positions; ++p) correlation += projection[p] * reference[p];
  if (correlation < 0.0)
    for (double& x : projection) x = -x;
  return projection;
}

CamMap finish(const std::vector<double>& map, uint32_t h, uint32_t w) {
  CamMap cam;
  cam.height = h;
  cam.width = w;
  cam.raw.assign(map.size(), 0.0f);
  float peak = 0.0f;
  for (size_t i = 0; i < map.size(); ++i) {
    const float x = static_cast<float>(map[i]);  // may overflow to inf: caught with the NaNs
    cam.raw[i] = std::isfinite(x) ? x : 0.0f;
    peak = std::max(peak, cam.raw[i]);
  }
  cam.normalized.assign(map.size(), 0.0f);
  cam.empty = !(peak > 0.0f);
  if (!cam.empty)
    for (size_t i = 0; i < map.size(); ++i) cam.normalized[i] = std::max(cam.raw[i], 0.0f) / peak;
  return cam;
}

}  // namespace

CamMethod parse_cam_method(std::string_view name) {
  std::string known;
  for (const auto& [method, method_name] : kMethodNames) {
    if (name == method_name) return method;
    known += (known.empty() ? "" : ", ") + std::string(method_name);
  }
  throw Error("unknown CAM method '" + std::string(name) + "' (known: " + known + ")");
}

std::string_view cam_method_name(CamMethod method) {
  for (const auto& [known, name] : kMethodNames)
    if (known == method) return name;
  throw Error("invalid CamMethod value " + std::to_string(static_cast<int>(method)));
}

bool cam_needs_gradient(CamMethod method) { return method != CamMethod::EigenCam; }

CamMap compute_cam(CamMethod method, std::span<const float> activations, std::span<const float> gradients,
                   uint32_t h, uint32_t w, uint32_t c) {
  const std::string what = "CAM (" + std::string(cam_method_name(method)) + ")";
  if (h == 0 || w == 0 || c == 0)
    throw Error(what + ": empty target layer shape " + std::to_string(h) + "x" + std::to_string(w) + "x" +
                std::to_string(c));
  const uint64_t positions = uint64_t{h} * w;
  const auto check_size = [&](std::span<const float> values, const char* name) {
    // values.size() / positions first: h * w * c itself may not fit in 64 bits
    if (values.size() % positions != 0 || values.size() / positions != c)
      throw Error(what + ": " + name + " hold " + std::to_string(values.size()) + " floats, not " +
                  std::to_string(h) + "x" + std::to_string(w) + "x" + std::to_string(c));
  };
  check_size(activations, "activations");
  const Tensor a{activations, positions, c};
  std::vector<double> map;
  if (method == CamMethod::EigenCam) {
    map = eigen_projection(a, what);
  } else {
    check_size(gradients, "gradients");
    const Tensor g{gradients, positions, c};
    if (method == CamMethod::HiResCam || method == CamMethod::LayerCam)
      map = elementwise_sum(a, g, method == CamMethod::LayerCam);
    else
      map = weighted_sum(a, channel_weights(method, a, g));
  }
  return finish(map, h, w);
}

}  // namespace effcam::imaging
