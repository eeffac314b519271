// The logits ONNX Runtime (the npm package onnxruntime-node, its CPU runtime) computes for an
// ONNX model: the reference the tests check `retort export <run> model.onnx` against.
//   node tests/common/onnx_runtime.js <onnxruntime-node folder> <model.onnx> <input file>
//        <float32 | int64> <dims, e.g. 3,1,28,28> <logits file>
// The input file holds the tensor fed as "input" (little-endian); the output "logits" is
// written as little-endian float32, and its dims printed as JSON. Fails (exit 1, the
// runtime's message on stderr) unless the graph has exactly those names.
'use strict';
const fs = require('fs');
const path = require('path');

const [packageDir, modelFile, inputFile, dtype, dimsText, logitsFile] = process.argv.slice(2);
if (!logitsFile || !['float32', 'int64'].includes(dtype)) {
  console.error('usage: node onnx_runtime.js <onnxruntime-node folder> <model.onnx> <input file> ' +
                '<float32 | int64> <dims> <logits file>');
  process.exit(2);
}
const ort = require(path.resolve(packageDir));
const bytes = fs.readFileSync(inputFile);
const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
const data = dtype === 'int64' ? new BigInt64Array(buffer) : new Float32Array(buffer);
const dims = dimsText.split(',').map(Number);

(async () => {
  // One thread: the tests share the machine with each other.
  const session = await ort.InferenceSession.create(modelFile, { intraOpNumThreads: 1, interOpNumThreads: 1 });
  const result = await session.run({ input: new ort.Tensor(dtype, data, dims) });
  if (!result.logits) throw new Error(`no output named "logits"; the outputs are ${session.outputNames}`);
  const logits = result.logits.data;
  fs.writeFileSync(logitsFile, Buffer.from(logits.buffer, logits.byteOffset, logits.byteLength));
  console.log(JSON.stringify({ dims: result.logits.dims }));
})().catch((error) => {
  console.error(String(error));
  process.exit(1);
});
