// lower(): translate every Keras layer (lowering/translate.cpp), run the rewrite passes (lowering/passes/), emit the
// file's records (lowering/emit.cpp).
#include "converter/lowering.h"

#include "converter/lowering/emit.h"
#include "converter/lowering/passes.h"
#include "converter/lowering/translate.h"
#include "effcam/error.hpp"

namespace effcam::converter {

EffcamBuilder lower(const keras::Model& model, const LoweringOptions& options, LoweringSummary& summary) {
  lowering::Graph g = lowering::translate(model, options);
  lowering::remove_identities(g);
  if (g.output == g.input) throw Error("the model has no layer between its input and output");
  lowering::fold_preprocessing(g);
  lowering::fold_zero_padding(g);
  lowering::fold_batchnorm_into_producers(g);
  lowering::fuse_activations(g);
  lowering::fold_channel_gates(g);
  lowering::fuse_squeeze_excite(g);
  lowering::fuse_depthwise_means(g);
  lowering::fuse_residual_adds(g);
  return lowering::emit(g, model, options, summary);
}

}  // namespace effcam::converter
