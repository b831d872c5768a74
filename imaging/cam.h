// Class-activation maps: turn a target layer's activations A and the gradient G = d(score)/dA (both H x W x C,
// fp32, HWC) into one H x W map, with the formulas of jacobgil/pytorch-grad-cam (v1.5.5, pytorch_grad_cam/*.py).
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace effcam::imaging {

enum class CamMethod { GradCam, GradCamPlusPlus, HiResCam, XGradCam, LayerCam, EigenCam };

// "gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "eigencam" (exact, lower case); throws
// effcam::Error listing these otherwise.
CamMethod parse_cam_method(std::string_view name);
std::string_view cam_method_name(CamMethod method);
// False only for EigenCam, which reads the activations alone (no backward pass needed).
bool cam_needs_gradient(CamMethod method);

struct CamMap {
  uint32_t height = 0;
  uint32_t width = 0;
  std::vector<float> raw;         // height * width, row-major: the method's map before any ReLU; always finite
                                  // (non-finite values, e.g. from NaN inputs, are stored as 0)
  std::vector<float> normalized;  // ReLU(raw) / max(ReLU(raw)), in 0..1; all zeros when empty
  bool empty = true;              // nothing positive in raw: the map holds no evidence for the class
};

// The map of `method` (with w_k a per-channel weight, sums over the H x W positions p or the C channels k):
//   GradCam          w_k = mean_p G,  raw = sum_k w_k A_k
//   HiResCam         raw = sum_k G_k * A_k
//   GradCamPlusPlus  alpha = G^2 / (2 G^2 + sum_p(A_k) G^3 + 1e-6) where G != 0, else 0;
//                    w_k = sum_p relu(G) * alpha,  raw = sum_k w_k A_k
//   XGradCam         w_k = sum_p(G * A) / (sum_p(A_k) + 1e-7),  raw = sum_k w_k A_k
//   LayerCam         raw = sum_k relu(G_k) * A_k
//   EigenCam         raw = the activations as an (HW x C) matrix, each channel's mean removed, projected on its
//                    first right singular vector (pytorch-grad-cam's get_2d_projection, non-finite A read as 0).
//                    The singular vector's sign is arbitrary; this one is chosen so that the projection
//                    correlates positively with the channel-sum map sum_k A_k (pytorch-grad-cam leaves it to
//                    the SVD routine). Found by power iteration on the smaller Gram matrix (M M^T or M^T M),
//                    whose min(h*w, c)^2 doubles are the only large scratch (at most 8 MiB).
// Sums run in double. `gradients` must hold h*w*c floats except for EigenCam, which ignores it (may be empty).
// Throws effcam::Error when a dimension is zero, a span's size is not h*w*c, or for EigenCam min(h*w, c) > 1024.
CamMap compute_cam(CamMethod method, std::span<const float> activations, std::span<const float> gradients,
                   uint32_t h, uint32_t w, uint32_t c);

}  // namespace effcam::imaging
