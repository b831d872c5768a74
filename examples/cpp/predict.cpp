// Classify an image and write its Grad-CAM overlay with libeffcam's C++ API.
// usage: predict MODEL.effcam IMAGE OVERLAY.png
#include <effcam/effcam.hpp>

#include <cstdio>

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s MODEL.effcam IMAGE OVERLAY.png\n", argv[0]);
    return 2;
  }
  try {
    effcam::Predictor predictor(effcam::Model::load(argv[1]));
    effcam::PredictOptions options;
    options.cam = effcam::CamMethod::GradCam;
    options.pictures.overlay = effcam::ImageFormat::Png;
    const effcam::Prediction p = predictor.predict(effcam::ImageSource::file(argv[2]), options);
    effcam::save(*p.overlay, argv[3]);
    std::printf("%s %.4f cam %s %ux%u\n", p.top_k[0].label.c_str(), p.top_k[0].probability, p.cam->layer.c_str(),
                p.cam->height, p.cam->width);
  } catch (const effcam::Error& e) {
    std::fprintf(stderr, "predict: %s\n", e.what());
    return 1;
  }
  return 0;
}
