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

}  // namespace effcam
