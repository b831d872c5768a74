// The graph of a loaded .effcam file: validation of every op through its kind's shape rule (engine/op_table.h) and
// every tensor's shape, and the multiply-add counts of the ops.
#pragma once

#include <cstdint>
#include <span>

#include "format/format.h"
#include "format/graph.h"
#include "format/model_file.h"

namespace effcam::engine {

// Checks that the file's ops form a valid graph (every tensor produced once before use, the inputs each kind
// needs, shapes that fit, weight dims that match, taps that the ops can serve) and computes all shapes. Throws
// effcam::Error naming the op.
Graph build_graph(const ModelFile& file);

// Multiply-adds of one op at batch 1 (OpDefinition::multiply_adds).
uint64_t op_multiply_adds(const format::Op& op, const OpGeometry& geometry);
// The sum over all ops of a graph built from `ops`.
uint64_t graph_multiply_adds(std::span<const format::Op> ops, const Graph& graph);

}  // namespace effcam::engine
