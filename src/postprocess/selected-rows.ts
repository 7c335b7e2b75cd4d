import { YqpError } from '../errors.js';
import type { TensorMap } from '../tensor.js';

/**
 * Rows a CUDA session selected on the GPU (loadModel's `selectRows`; trt/onnxruntime/ort_selection.h): in place of a
 * (scores, rows) output pair, one output named `selected:<scores output>`, float32 [batch, 4 + maxRows x (2 +
 * width)]. Per image a header of int32 bits (rows passed, rows, width, maxRows), then up to maxRows records of
 * [row index, raw score, width values] in no particular order.
 */
export const SELECTED_PREFIX = 'selected:';
const HEADER = 4;

export interface SelectedRows {
  /** Rows per image in the full output (the anchors of this output pair). */
  readonly rows: number;
  readonly width: number;
  /**
   * Image b's selected rows in row order: `row` holds each record, its values at `offset + 2 ...` (raw score at
   * `offset + 1`).
   */
  each(b: number, visit: (index: number, rawScore: number, row: Float32Array, offset: number) => void): void;
}

/** The selected rows that stand for the pair whose scores output is `scores`, or undefined (the full outputs came). */
export function selectedRowsOf(outputs: TensorMap, scores: string): SelectedRows | undefined {
  const t = outputs[SELECTED_PREFIX + scores];
  if (!t) return undefined;
  const data = t.data as Float32Array;
  const header = new Int32Array(data.buffer, data.byteOffset, data.length);
  const perImage = t.dims[1];
  const rows = header[1];
  const width = header[2];
  const maxRows = header[3];
  if (perImage !== HEADER + maxRows * (2 + width))
    throw new YqpError('E_BACKEND', `${SELECTED_PREFIX}${scores}: a header that does not fit its shape`);
  return {
    rows,
    width,
    each(b, visit) {
      const base = b * perImage;
      const passed = header[base];
      // The runner sends the full outputs when an image has more: a truncated list here would lose faces.
      if (passed > maxRows)
        throw new YqpError(
          'E_BACKEND',
          `${SELECTED_PREFIX}${scores}: image ${b} passed ${passed} rows, more than the ${maxRows} kept`,
        );
      const order: number[] = [];
      for (let k = 0; k < passed; k++) order.push(base + HEADER + k * (2 + width));
      // The kernel writes in arrival order: row order makes the decode's input, and so its NMS, the full path's.
      order.sort((x, y) => data[x] - data[y]);
      for (const o of order) visit(data[o], data[o + 1], data, o);
    },
  };
}
