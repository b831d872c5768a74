// The web page served at GET / (serve/page/index.html, embedded at build time by embed_file.cmake).
#pragma once

#include <cstddef>

namespace effcam::serve {

extern const unsigned char kPageHtml[];
extern const size_t kPageHtmlSize;

}  // namespace effcam::serve
