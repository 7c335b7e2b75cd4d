import { SELECTED_PREFIX } from '../../src/postprocess/index.js';
import type { TensorMap } from '../../src/tensor.js';

/**
 * What trt/kernels/row_select.cu writes, computed in JS from full outputs: per (scores, rows) pair one
 * `selected:<scores>` tensor (header: rows passed, rows, width, maxRows; then [index, raw score, row...] records),
 * its records in reverse row order (the kernel's order is arbitrary: the decoder must not depend on it).
 */
export function selectRowsLikeTheKernel(
  outputs: TensorMap,
  pairs: [string, string][],
  minScore: number,
  maxRows: number,
): TensorMap {
  const out: TensorMap = { ...outputs };
  for (const [scoresName, rowsName] of pairs) {
    const scores = outputs[scoresName];
    const rows = outputs[rowsName];
    const [batch, count] = scores.dims;
    const width = rows.dims[2];
    const perImage = 4 + maxRows * (2 + width);
    const data = new Float32Array(batch * perImage);
    const header = new Int32Array(data.buffer);
    const s = scores.data as Float32Array;
    const r = rows.data as Float32Array;
    for (let b = 0; b < batch; b++) {
      const base = b * perImage;
      let passed = 0;
      for (let i = count - 1; i >= 0; i--) {
        if (!(s[b * count + i] >= minScore)) continue;
        if (passed < maxRows) {
          const o = base + 4 + passed * (2 + width);
          data[o] = i;
          data[o + 1] = s[b * count + i];
          data.set(r.subarray((b * count + i) * width, (b * count + i + 1) * width), o + 2);
        }
        passed++;
      }
      header.set([passed, count, width, maxRows], base);
    }
    delete out[scoresName];
    delete out[rowsName];
    out[SELECTED_PREFIX + scoresName] = { dtype: 'float32', dims: [batch, perImage], data };
  }
  return out;
}
