#!/usr/bin/env node
// ONNX Runtime (CPU execution provider) latency of one model, for bench/side_by_side.py.
//   node ort_bench.js --model M.onnx [--threads N] [--iters N] [--warmup N]
//   node ort_bench.js --baseline      the peak RSS of a Node process that loads nothing (to subtract)
// Prints one JSON object: latencies in ms (min / median / p90 and every sample) and the process's peak RSS
// (VmHWM, as effcam-bench reports it). The input is fixed pseudo-random data of the model's input shape.
'use strict';

const fs = require('node:fs');

const USAGE = 'usage: node ort_bench.js --model M.onnx [--threads N] [--iters N] [--warmup N] | --baseline';

function fail(message) {
  process.stderr.write(`ort_bench: ${message}\n${USAGE}\n`);
  process.exit(2);
}

function parseArguments(argv) {
  const args = { model: null, threads: 1, iters: 20, warmup: 3, baseline: false };
  const count = (option, text, min) => {
    const value = Number(text);
    if (!Number.isInteger(value) || value < min || value > 100000) fail(`${option} wants a whole number >= ${min}, got '${text}'`);
    return value;
  };
  for (let i = 0; i < argv.length; ++i) {
    const arg = argv[i];
    const value = () => (i + 1 < argv.length ? argv[++i] : fail(`${arg} needs a value`));
    if (arg === '--model') args.model = value();
    else if (arg === '--threads') args.threads = count(arg, value(), 1);
    else if (arg === '--iters') args.iters = count(arg, value(), 1);
    else if (arg === '--warmup') args.warmup = count(arg, value(), 0);
    else if (arg === '--baseline') args.baseline = true;
    else fail(`unknown argument ${arg}`);
  }
  if (!args.baseline && !args.model) fail('--model is required');
  return args;
}

// VmHWM from /proc/self/status in bytes; getrusage's maxRSS (the same figure) where /proc is absent.
function peakRssBytes() {
  try {
    const match = /^VmHWM:\s+(\d+)\s+kB$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    if (match) return Number(match[1]) * 1024;
  } catch (_) { /* not Linux */ }
  return process.resourceUsage().maxRSS * 1024;
}

function percentiles(samples) {
  const sorted = [...samples].sort((a, b) => a - b);
  const n = sorted.length;
  const median = n % 2 ? sorted[(n - 1) / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
  return { min: sorted[0], median, p90: sorted[Math.max(Math.ceil(0.9 * n), 1) - 1] };
}

// Deterministic values in [0, 1): the same input for every run.
function testInput(size) {
  const data = new Float32Array(size);
  let state = 12345;
  for (let i = 0; i < size; ++i) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    data[i] = (state >>> 8) / 16777216;
  }
  return data;
}

async function main() {
  const args = parseArguments(process.argv.slice(2));
  if (args.baseline) {
    process.stdout.write(`${JSON.stringify({ runtime: 'node', node: process.version, peak_rss_bytes: peakRssBytes() })}\n`);
    return;
  }
  const ort = require('onnxruntime-node');
  const session = await ort.InferenceSession.create(args.model, {
    executionProviders: ['cpu'],
    intraOpNumThreads: args.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  const name = session.inputNames[0];
  const dims = session.inputMetadata[0].shape;
  if (!dims.every((d) => Number.isInteger(d) && d > 0)) fail(`the model's input shape is not fixed: ${JSON.stringify(dims)}`);
  const input = new ort.Tensor('float32', testInput(dims.reduce((a, b) => a * b, 1)), dims);
  const feeds = { [name]: input };

  for (let i = 0; i < args.warmup; ++i) await session.run(feeds);
  const samples = [];
  for (let i = 0; i < args.iters; ++i) {
    const start = process.hrtime.bigint();
    await session.run(feeds);
    samples.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  const latency = percentiles(samples);
  process.stdout.write(`${JSON.stringify({
    runtime: 'onnxruntime-node',
    version: ort.env.versions?.node ?? null,
    model: args.model,
    input: dims,
    threads: args.threads,
    iters: args.iters,
    latency_ms: latency,
    samples_ms: samples,
    images_per_s: 1000 / latency.median,
    peak_rss_bytes: peakRssBytes(),
  })}\n`);
  await session.release();
}

main().catch((error) => {
  process.stderr.write(`ort_bench: ${error.message}\n`);
  process.exit(1);
});
