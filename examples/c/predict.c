/* Classify an image and write its Grad-CAM overlay with libeffcam's C API.
 * usage: predict MODEL.effcam IMAGE OVERLAY.png */
#include <effcam/effcam.h>
#include <stdio.h>

int main(int argc, char** argv) {
  if (argc != 4) return fprintf(stderr, "usage: %s MODEL.effcam IMAGE OVERLAY.png\n", argv[0]), 2;
  effcam_model* model = NULL;
  effcam_predictor* predictor = NULL;
  effcam_prediction* prediction = NULL;
  effcam_predict_options options;
  effcam_predict_options_init(&options);
  options.cam = EFFCAM_CAM_GRADCAM;
  options.overlay = EFFCAM_IMAGE_PNG;
  effcam_prediction_view view;
  const uint8_t* png;
  size_t png_size;
  FILE* out;
  if (effcam_model_load(argv[1], &model) || effcam_predictor_create(model, NULL, &predictor) ||
      effcam_predict_file(predictor, argv[2], &options, &prediction) || effcam_prediction_get(prediction, &view) ||
      effcam_prediction_overlay(prediction, &png, &png_size) || !(out = fopen(argv[3], "wb"))) {
    fprintf(stderr, "predict: %s\n", effcam_last_error());
    return 1;
  }
  fwrite(png, 1, png_size, out);
  fclose(out);
  printf("%s %.4f cam %s %ux%u\n", view.top_k[0].label, view.top_k[0].probability, view.cam->layer, view.cam->height,
         view.cam->width);
  effcam_prediction_free(prediction);
  effcam_predictor_free(predictor);
  effcam_model_free(model);
  return 0;
}
