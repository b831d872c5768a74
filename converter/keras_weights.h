// Weights: every layer's variables read from the H5 file (by group in a .keras file, by name in a legacy .h5) and
// checked against the shapes its config implies.
#pragma once

#include "converter/h5_file.h"
#include "converter/keras_graph.h"
#include "converter/keras_model.h"

namespace effcam::keras {

// The model of `graph` with its weights (source_format, keras_version and name are left to the caller).
// Every problem names the layer.
Model attach_weights(FlatGraph graph, Format format, const h5::File& weights);

}  // namespace effcam::keras
