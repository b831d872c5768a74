// Emission: the fused graph -> the records of a .effcam file (ops in execution order, weights cast to the file's
// dtype and packed, taps, preprocessing, labels, metadata).
#pragma once

#include "converter/effcam_writer.h"
#include "converter/keras_model.h"
#include "converter/lowering.h"
#include "converter/lowering/ir.h"

namespace effcam::converter::lowering {

EffcamBuilder emit(const Graph& g, const keras::Model& model, const LoweringOptions& options,
                   LoweringSummary& summary);

}  // namespace effcam::converter::lowering
