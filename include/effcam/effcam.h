/* libeffcam's C API: the C++ API (effcam/effcam.hpp) as opaque handles and plain structs, for C programs and for
 * other languages to bind to. Every symbol starts with effcam_; no exception crosses it.
 *
 * Errors: functions return effcam_status (EFFCAM_OK = 0). On failure, effcam_last_error() returns the one-line
 * message of the calling thread's last failure (valid until that thread's next effcam_ call). Output parameters are
 * left untouched on failure. A NULL handle or output pointer is EFFCAM_ERROR_ARGUMENT, never a crash.
 *
 * Threads and memory:
 * - An effcam_model is immutable: any number of threads and predictors may use it at once. Its weights are the
 *   file mmap'd read-only and shared between processes (a model loaded from a buffer owns a copy). Free it after
 *   its predictors; a predictor keeps the model alive, so freeing the model first is also safe.
 * - An effcam_predictor owns one fixed arena, planned and allocated by effcam_predictor_create and reused by every
 *   prediction (effcam_predictor_arena_bytes reports it). One predictor per concurrent caller: a predictor must not
 *   be used by two threads at once.
 * - An effcam_prediction owns its results (probabilities, CAM, encoded images, JSON); every pointer read from it
 *   stays valid until effcam_prediction_free. Predictions allocate per call and free everything: memory stays flat.
 */
#ifndef EFFCAM_H
#define EFFCAM_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define EFFCAM_C_API
#else
#define EFFCAM_C_API __attribute__((visibility("default")))
#endif

/* Every int is a valid value of the API's enums in C++ too (as in C), so a bad value from a caller or a binding is
 * an argument error, never undefined behaviour. */
#ifdef __cplusplus
#define EFFCAM_ENUM(name) enum name : int
#else
#define EFFCAM_ENUM(name) enum name
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* The version of this header. effcam_api_version() returns the library's: a program built against version N runs
 * with a library whose version is N. */
#define EFFCAM_API_VERSION 1

typedef EFFCAM_ENUM(effcam_status) {
  EFFCAM_OK = 0,
  EFFCAM_ERROR_ARGUMENT = 1,      /* NULL pointer, unknown layer or method, class out of range, wrong sizes */
  EFFCAM_ERROR_IO = 2,            /* cannot open, read or write a file */
  EFFCAM_ERROR_FORMAT = 3,        /* corrupt, truncated or unsupported model file */
  EFFCAM_ERROR_IMAGE = 4,         /* undecodable image */
  EFFCAM_ERROR_OUT_OF_MEMORY = 5,
  EFFCAM_ERROR_INTERNAL = 6
} effcam_status;

typedef EFFCAM_ENUM(effcam_cam_method) {
  EFFCAM_CAM_NONE = 0,
  EFFCAM_CAM_GRADCAM = 1,
  EFFCAM_CAM_GRADCAM_PLUS_PLUS = 2,
  EFFCAM_CAM_HIRESCAM = 3,
  EFFCAM_CAM_XGRADCAM = 4,
  EFFCAM_CAM_LAYERCAM = 5,
  EFFCAM_CAM_EIGENCAM = 6
} effcam_cam_method;

typedef EFFCAM_ENUM(effcam_cam_score) { EFFCAM_SCORE_LOGIT = 0, EFFCAM_SCORE_PROB = 1 } effcam_cam_score;
typedef EFFCAM_ENUM(effcam_image_format) {
  EFFCAM_IMAGE_NONE = 0,
  EFFCAM_IMAGE_PNG = 1,
  EFFCAM_IMAGE_JPEG = 2
} effcam_image_format;
typedef EFFCAM_ENUM(effcam_render_size) { EFFCAM_RENDER_MODEL = 0, EFFCAM_RENDER_ORIGINAL = 1 } effcam_render_size;

typedef struct effcam_model effcam_model;
typedef struct effcam_predictor effcam_predictor;
typedef struct effcam_prediction effcam_prediction;

EFFCAM_C_API int effcam_api_version(void);
EFFCAM_C_API const char* effcam_version(void);
/* The calling thread's last error message ("" when none). */
EFFCAM_C_API const char* effcam_last_error(void);
/* A constant name for a status ("ok", "argument", "io", "format", "image", "out of memory", "internal"). */
EFFCAM_C_API const char* effcam_status_name(effcam_status status);

/* The kernel path, process-wide: the best this CPU has unless forced ("avx512", "avx2", "scalar"); call before
 * predicting, not while a predictor runs. effcam_dispatch returns the current one (a constant string). */
EFFCAM_C_API effcam_status effcam_set_dispatch(const char* path);
EFFCAM_C_API const char* effcam_dispatch(void);

/* ---- Models ---- */
EFFCAM_C_API effcam_status effcam_model_load(const char* path, effcam_model** out);
/* Copies the buffer: it may be freed on return. */
EFFCAM_C_API effcam_status effcam_model_load_buffer(const void* data, size_t size, effcam_model** out);
EFFCAM_C_API void effcam_model_free(effcam_model* model); /* NULL is fine */

typedef struct effcam_model_info {
  uint32_t input_height, input_width, input_channels;
  uint32_t classes;
  uint32_t cam_layers; /* how many layers a CAM can target (effcam_model_cam_layer) */
  int has_labels, has_logits;
  uint64_t file_bytes, weight_bytes;
  const char* default_cam_layer; /* "" when the model has none; valid while the model lives */
} effcam_model_info;
EFFCAM_C_API effcam_status effcam_model_get_info(const effcam_model* model, effcam_model_info* out);
/* The class's label ("class_<i>" without labels); valid while the model lives. */
EFFCAM_C_API effcam_status effcam_model_label(const effcam_model* model, uint32_t class_index, const char** out);

typedef struct effcam_layer_info {
  const char* name;       /* valid while the model lives */
  const char* class_name; /* the Keras class */
  uint32_t height, width, channels;
} effcam_layer_info;
EFFCAM_C_API effcam_status effcam_model_cam_layer(const effcam_model* model, uint32_t index, effcam_layer_info* out);

/* ---- Predictors ---- */
typedef struct effcam_predictor_options {
  uint32_t threads;              /* 1 (the default) starts no threads */
  const char* const* cam_layers; /* the layers CAMs may target; NULL or 0 layers: the model's default */
  size_t cam_layer_count;
  int explain;                   /* 0: plan the forward pass only (CAMs are then refused); default 1 */
  uint64_t max_image_pixels;     /* larger encoded images are refused; 1..100,000,000 (the default) */
  uint64_t max_image_bytes;      /* the image byte budget (PredictorOptions::max_image_bytes); 0 (default):
                                    24 x max_image_pixels + 4 MiB */
  uint64_t memory_budget_bytes;  /* the most the arena may take (PredictorOptions::memory_budget_bytes); 0 (default):
                                    twice the forward pass's arena (or the smallest arena found) */
} effcam_predictor_options;
EFFCAM_C_API void effcam_predictor_options_init(effcam_predictor_options* options);

/* options may be NULL (the defaults). The predictor keeps its own reference to the model. */
EFFCAM_C_API effcam_status effcam_predictor_create(const effcam_model* model, const effcam_predictor_options* options,
                                                   effcam_predictor** out);
EFFCAM_C_API void effcam_predictor_free(effcam_predictor* predictor); /* NULL is fine */
EFFCAM_C_API uint64_t effcam_predictor_arena_bytes(const effcam_predictor* predictor); /* 0 for NULL */
/* A bound on what one prediction allocates besides the arena (Predictor::image_bytes); 0 for NULL. */
EFFCAM_C_API uint64_t effcam_predictor_image_bytes(const effcam_predictor* predictor);

typedef struct effcam_predict_options {
  uint32_t top_k;               /* default 5 */
  effcam_cam_method cam;        /* default EFFCAM_CAM_NONE */
  const char* cam_layer;        /* NULL or "": the predictor's first CAM layer */
  effcam_cam_score cam_score;   /* default EFFCAM_SCORE_LOGIT */
  int64_t cam_class;            /* < 0 (default -1): the top-1 class */
  effcam_image_format overlay;  /* default none */
  effcam_image_format heatmap;  /* default none */
  effcam_render_size render_size;
  float overlay_alpha;          /* default 0.4 */
  int jpeg_quality;             /* default 90 */
  int apply_exif_orientation;   /* 1: turn the image upright by its EXIF tag first; default 0 (as PIL's open) */
  int fast_jpeg_decode;         /* 1: JPEG DCT scaling as PIL's draft(); default 0 (exact) */
  effcam_image_format input_image; /* the 8-bit model input, encoded (effcam_prediction_input_image); default none */
} effcam_predict_options;
EFFCAM_C_API void effcam_predict_options_init(effcam_predict_options* options);

/* options may be NULL (the defaults). name labels messages and the JSON's "image" (NULL: "<memory>"). */
EFFCAM_C_API effcam_status effcam_predict_encoded(effcam_predictor* predictor, const void* data, size_t size,
                                                  const char* name, const effcam_predict_options* options,
                                                  effcam_prediction** out);
EFFCAM_C_API effcam_status effcam_predict_file(effcam_predictor* predictor, const char* path,
                                               const effcam_predict_options* options, effcam_prediction** out);
/* 8-bit pixels, channels interleaved (1 = L, 2 = LA, 3 = RGB, 4 = RGBA; alpha is dropped as PIL's convert() drops
 * it); row_stride in bytes, 0 = width * channels.
 * size is the buffer's length in bytes: it must hold every addressed pixel. */
EFFCAM_C_API effcam_status effcam_predict_pixels(effcam_predictor* predictor, const uint8_t* pixels, size_t size,
                                                 uint32_t width, uint32_t height, uint32_t channels,
                                                 size_t row_stride, const effcam_predict_options* options,
                                                 effcam_prediction** out);
EFFCAM_C_API void effcam_prediction_free(effcam_prediction* prediction); /* NULL is fine */

/* ---- Reading a prediction (pointers valid until effcam_prediction_free) ---- */
typedef struct effcam_class_score {
  uint32_t index;
  const char* label;
  float probability;
} effcam_class_score;

typedef struct effcam_cam {
  effcam_cam_method method;
  const char* layer;
  uint32_t class_index;
  effcam_cam_score score_kind;
  float score;
  uint32_t height, width;
  const float* values; /* height * width, row-major, normalised to 0..1 */
  const float* raw;    /* height * width, before ReLU and normalisation */
  int empty;
} effcam_cam;

typedef struct effcam_prediction_view {
  const effcam_class_score* top_k;
  size_t top_k_count;
  const float* probabilities; /* classes values */
  const float* logits;        /* NULL when the model has none */
  size_t classes;
  const effcam_cam* cam;      /* NULL when no CAM was asked */
  double decode_ms, preprocess_ms, forward_ms, cam_ms, total_ms;
  uint64_t peak_rss_bytes, arena_bytes;
  uint32_t image_width, image_height;  /* the decoded image, after any orientation */
  uint32_t exif_orientation, applied_orientation; /* 1..8 (1: none / not applied) */
  uint32_t jpeg_scale;                 /* the DCT scale denominator: 1, or 2, 4, 8 with fast_jpeg_decode */
} effcam_prediction_view;
EFFCAM_C_API effcam_status effcam_prediction_get(const effcam_prediction* prediction, effcam_prediction_view* out);
/* The encoded overlay / heatmap (EFFCAM_ERROR_ARGUMENT when none was asked). */
EFFCAM_C_API effcam_status effcam_prediction_overlay(const effcam_prediction* prediction, const uint8_t** data,
                                                     size_t* size);
EFFCAM_C_API effcam_status effcam_prediction_heatmap(const effcam_prediction* prediction, const uint8_t** data,
                                                     size_t* size);
/* The encoded model input (effcam_predict_options.input_image; EFFCAM_ERROR_ARGUMENT when none was asked). */
EFFCAM_C_API effcam_status effcam_prediction_input_image(const effcam_prediction* prediction, const uint8_t** data,
                                                         size_t* size);
/* The JSON object effcam-predict --json prints (one line, NUL-terminated). */
EFFCAM_C_API effcam_status effcam_prediction_json(const effcam_prediction* prediction, const char** out);

/* ---- Drawing a prediction's CAM again ---- */
typedef struct effcam_render_options {
  effcam_image_format overlay;     /* default EFFCAM_IMAGE_PNG */
  effcam_image_format heatmap;     /* default none */
  effcam_render_size render_size;  /* default EFFCAM_RENDER_MODEL */
  float overlay_alpha;             /* default 0.4 */
  int jpeg_quality;                /* default 90 */
} effcam_render_options;
EFFCAM_C_API void effcam_render_options_init(effcam_render_options* options);

/* The CAM of `prediction` drawn over its image again with other picture options, without running the network
 * (Predictor::render): the same bytes as a prediction made with these options. The image must be the one the
 * prediction was made from; out receives a new prediction: `prediction` with these pictures in place of its own
 * (read them with effcam_prediction_overlay / effcam_prediction_heatmap). options may be NULL (the defaults). */
EFFCAM_C_API effcam_status effcam_render_encoded(const effcam_predictor* predictor, const effcam_prediction* prediction,
                                                 const void* data, size_t size, const char* name,
                                                 const effcam_render_options* options, effcam_prediction** out);
EFFCAM_C_API effcam_status effcam_render_file(const effcam_predictor* predictor, const effcam_prediction* prediction,
                                              const char* path, const effcam_render_options* options,
                                              effcam_prediction** out);
EFFCAM_C_API effcam_status effcam_render_pixels(const effcam_predictor* predictor, const effcam_prediction* prediction,
                                                const uint8_t* pixels, size_t size, uint32_t width, uint32_t height,
                                                uint32_t channels, size_t row_stride,
                                                const effcam_render_options* options, effcam_prediction** out);

/* ---- Converting Keras models ---- */
typedef struct effcam_convert_options {
  int fp32;                      /* 0 (default): fp16 weights */
  const char* const* labels;     /* one per class, or NULL */
  size_t label_count;
  uint32_t input_height, input_width; /* 0: as the model declares */
} effcam_convert_options;
EFFCAM_C_API void effcam_convert_options_init(effcam_convert_options* options);
/* report_out (may be NULL) receives the effcam-convert report text; free it with effcam_string_free. */
EFFCAM_C_API effcam_status effcam_convert(const char* input, const char* output, const effcam_convert_options* options,
                                          char** report_out);
EFFCAM_C_API void effcam_string_free(char* text);

#ifdef __cplusplus
}
#endif

#endif /* EFFCAM_H */
