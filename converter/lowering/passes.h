// The rewrite passes of the lowering, in the order lower() runs them. Each finds a pattern in the graph and fuses
// or folds it, moving the taps of the Keras layers it removes to where their values can still be recovered (or
// dropping them). Folding arithmetic is done in double, on weights still in Keras layout.
#pragma once

#include "converter/lowering/ir.h"

namespace effcam::converter::lowering {

void remove_identities(Graph& g);              // passes/identities.cpp
void fold_preprocessing(Graph& g);             // passes/preprocessing.cpp
void fold_zero_padding(Graph& g);              // passes/zero_padding.cpp
void fold_batchnorm_into_producers(Graph& g);  // passes/batchnorm.cpp
void fuse_activations(Graph& g);               // passes/activations.cpp
void fold_channel_gates(Graph& g);             // passes/squeeze_excite.cpp
void fuse_squeeze_excite(Graph& g);            // passes/squeeze_excite.cpp
void fuse_depthwise_means(Graph& g);           // passes/squeeze_excite.cpp
void fuse_residual_adds(Graph& g);             // passes/residual.cpp

}  // namespace effcam::converter::lowering
