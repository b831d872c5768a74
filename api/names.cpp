// The API's option names, as the tools, the service and the Python package spell them. The CAM methods' names are
// imaging's (imaging/cam.h); the API adds "none".
#include "api/state.h"
#include "imaging/cam.h"

namespace effcam {

imaging::CamMethod detail::imaging_method(CamMethod method) {
  switch (method) {
    case CamMethod::GradCam: return imaging::CamMethod::GradCam;
    case CamMethod::GradCamPlusPlus: return imaging::CamMethod::GradCamPlusPlus;
    case CamMethod::HiResCam: return imaging::CamMethod::HiResCam;
    case CamMethod::XGradCam: return imaging::CamMethod::XGradCam;
    case CamMethod::LayerCam: return imaging::CamMethod::LayerCam;
    case CamMethod::EigenCam: return imaging::CamMethod::EigenCam;
    case CamMethod::None: break;
  }
  throw Error("no CAM method given");
}

CamMethod parse_cam_method(const std::string& name) {
  if (name == "none") return CamMethod::None;
  switch (imaging::parse_cam_method(name)) {
    case imaging::CamMethod::GradCam: return CamMethod::GradCam;
    case imaging::CamMethod::GradCamPlusPlus: return CamMethod::GradCamPlusPlus;
    case imaging::CamMethod::HiResCam: return CamMethod::HiResCam;
    case imaging::CamMethod::XGradCam: return CamMethod::XGradCam;
    case imaging::CamMethod::LayerCam: return CamMethod::LayerCam;
    case imaging::CamMethod::EigenCam: return CamMethod::EigenCam;
  }
  throw Error("unknown CAM method '" + name + "'");
}

const char* cam_method_name(CamMethod method) {
  return method == CamMethod::None ? "none" : imaging::cam_method_name(detail::imaging_method(method)).data();
}

CamScore parse_cam_score(const std::string& name) {
  if (name == "logit") return CamScore::Logit;
  if (name == "prob") return CamScore::Prob;
  throw Error("CAM score must be logit or prob, got '" + name + "'");
}

const char* cam_score_name(CamScore score) { return score == CamScore::Logit ? "logit" : "prob"; }

ImageFormat parse_image_format(const std::string& name) {
  if (name == "png") return ImageFormat::Png;
  if (name == "jpeg" || name == "jpg") return ImageFormat::Jpeg;
  if (name == "none") return ImageFormat::None;
  throw Error("image format must be png, jpeg or none, got '" + name + "'");
}

RenderSize parse_render_size(const std::string& name) {
  if (name == "model") return RenderSize::Model;
  if (name == "original") return RenderSize::Original;
  throw Error("render size must be model or original, got '" + name + "'");
}

uint64_t parse_byte_size(const std::string& text) {
  // Digits, then an optional binary unit; fractions ("1.5GiB") are refused.
  size_t digits = 0;
  uint64_t value = 0;
  bool overflow = false;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') {
    overflow |= value > (~uint64_t{0} - 9) / 10;
    value = value * 10 + static_cast<uint64_t>(text[digits++] - '0');
  }
  const std::string unit = text.substr(digits);
  unsigned shift = 0;
  if (unit == "K" || unit == "KiB") {
    shift = 10;
  } else if (unit == "M" || unit == "MiB") {
    shift = 20;
  } else if (unit == "G" || unit == "GiB") {
    shift = 30;
  } else if (!unit.empty() && unit != "B") {
    digits = 0;
  }
  if (digits == 0 || overflow || value > (~uint64_t{0} >> shift)) {
    throw Error("a memory size is a whole number of bytes, optionally with K, M or G (KiB, MiB, GiB), got '" +
                text + "'");
  }
  return value << shift;
}

}  // namespace effcam
