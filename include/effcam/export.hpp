// EFFCAM_API marks what libeffcam.so exports; everything else is built with -fvisibility=hidden.
#pragma once

#if defined(_WIN32)
#define EFFCAM_API
#else
#define EFFCAM_API __attribute__((visibility("default")))
#endif
