import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { concatPadsToPad } from '../onnx/channel-pad.js';
import { ORT_MODEL_FILE, ORT_S8_MODEL_FILE } from '../onnx/int8-weights.js';
import { encodeOnnx, type ModelProto } from '../onnx/model.js';
import { excludeFromPlan, planQdq } from '../onnx/qdq.js';
import { insertOrtQdq, ortHeadTensors, type OrtQdqResult } from '../onnx/qdq-ort.js';
import { widenChannels, type WidenResult } from '../onnx/widen-channels.js';
import { describeAccuracy, type AccuracyProbe, type AccuracyResult } from './accuracy.js';
import { cloneModel } from './equalize.js';

export { ORT_MODEL_FILE, ORT_S8_MODEL_FILE };

/** What calibration.json keeps of a tensor's range for the onnxruntime form (ortExtra). */
export interface OrtRange {
  /** Largest |x|. */
  max: number;
  /** Smallest value. */
  min: number;
  /** Largest value (absent in calibration.json files from before the heads were quantized). */
  hi?: number;
  /** The entropy threshold (absent in older calibration.json files). */
  entropy?: number;
}

/**
 * Quantized heads are kept when they find every face the float heads find on the validation frames and lower
 * the lowest output cosine to FP32 by at most this much (calibrated on a mixed set, 8-bit heads passed the
 * held-out frames with a cosine 0.04 lower and then lost one face in 16 on other photos).
 */
export const HEAD_COSINE_DROP = 0.01;

/**
 * The range of the Conv outputs that feed a residual Add, which only this form quantizes (TensorRT fuses the Add
 * into the Conv and keeps the sum in higher precision). Neither wins everywhere: calibrated on 14 mixed photos,
 * max lost 3 of 16 faces on other photos and entropy none; on 20, entropy lost one and max none. The build
 * validates both and keeps the better.
 */
export type ExtraMethod = 'entropy' | 'max';

export interface OrtFormInputs {
  fp32: ModelProto;
  /** Chosen amax of each plan activation. */
  amax: ReadonlyMap<string, number>;
  /** Smallest value of each plan activation (non-negative tensors get zero point 0). */
  mins: ReadonlyMap<string, number>;
  extra: Readonly<Record<string, OrtRange>>;
  /** Tensors the fallback left unquantized. */
  excluded: readonly string[];
}

/**
 * The onnxruntime form of the calibrated model (qdq-ort.ts), on a copy of the FP32 model rewritten for
 * onnxruntime's CPU kernels without changing its function: channel pads as Pad (concatPadsToPad, so the layout
 * transformer keeps the whole chain NHWC), channels widened to multiples of 16 (widenChannels, so MLAS runs its
 * symmetric u8s8 kernels). With `quantizeHeads` the heads' outputs are uint8 too (asymmetric over their range).
 */
export function ortForm(
  inputs: OrtFormInputs,
  options: { heads: boolean; extras: ExtraMethod; signedWeights?: boolean },
): { proto: ModelProto; qdq: OrtQdqResult; pads: number; widen: WidenResult; heads: number } {
  const proto = cloneModel(inputs.fp32);
  const pads = concatPadsToPad(proto.graph!);
  const widen = widenChannels(proto.graph!);
  const all = new Map(inputs.amax);
  for (const [n, e] of Object.entries(inputs.extra))
    all.set(n, options.extras === 'entropy' ? Math.min(e.max, e.entropy ?? e.max) : e.max);
  const mins = new Map(inputs.mins);
  for (const [n, e] of Object.entries(inputs.extra)) mins.set(n, e.min);
  const plan = excludeFromPlan(planQdq(proto), inputs.excluded);
  const heads = new Map<string, { min: number; max: number }>();
  if (options.heads)
    for (const t of ortHeadTensors(proto, plan)) {
      const e = inputs.extra[t];
      if (e?.hi !== undefined) heads.set(t, { min: e.min, max: e.hi });
    }
  const qdq = insertOrtQdq(proto, plan, all, (t) => (mins.get(t) ?? -1) >= 0, {
    heads,
    signedWeights: options.signedWeights,
  });
  return { proto, qdq, pads, widen, heads: heads.size };
}

/** Whether a is the better validation result: passes when b does not, else a higher score, then cosine. */
function better(a: AccuracyResult, b: AccuracyResult): boolean {
  if (a.pass !== b.pass) return a.pass;
  return a.score !== b.score ? a.score > b.score : a.cosine > b.cosine;
}

/**
 * Writes the onnxruntime form beside the TensorRT form and validates it on the same frames; the onnxruntime
 * backend loads it only when it meets the target too. The heads' outputs are quantized only where the
 * validation frames show it costs nothing (HEAD_COSINE_DROP); without validation frames they stay float.
 */
export async function writeOrtForm(
  versionDir: string,
  inputs: OrtFormInputs,
  probe: AccuracyProbe | undefined,
  summaryOf: (r: AccuracyResult, from: string) => Record<string, unknown>,
): Promise<{ usable: boolean; note: string; metadata: Record<string, unknown> }> {
  let form = ortForm(inputs, { heads: false, extras: 'entropy' });
  let result = probe ? await probe.evaluate(form.proto) : undefined;
  let extras: ExtraMethod = 'entropy';
  if (probe && result) {
    const other = ortForm(inputs, { heads: false, extras: 'max' });
    const r = await probe.evaluate(other.proto);
    if (better(r, result)) {
      form = other;
      result = r;
      extras = 'max';
    }
  }
  let headsNote = '';
  if (probe && result?.pass) {
    const withHeads = ortForm(inputs, { heads: true, extras });
    if (withHeads.heads > 0) {
      const r = await probe.evaluate(withHeads.proto);
      const kept = r.pass && r.matched === result.matched && r.cosine >= result.cosine - HEAD_COSINE_DROP;
      if (kept) {
        form = withHeads;
        result = r;
        headsNote = `, ${withHeads.heads} heads on 8 bits`;
      } else
        headsNote = `, heads kept float (with 8-bit heads: ${r.metric === 'faces' ? `${r.matched}/${r.facesFp32} faces against ${result.matched}, ` : ''}lowest output cosine ${r.cosine.toFixed(3)} against ${result.cosine.toFixed(3)})`;
    }
  }
  await writeFile(join(versionDir, ORT_MODEL_FILE), encodeOnnx(form.proto));
  // The same form with int8 weights, for CPUs with VNNI (src/onnx/int8-weights.ts). Not validated apart: where it
  // runs it computes the integers the u8u8 form computes.
  const signed = ortForm(inputs, { heads: form.heads > 0, extras, signedWeights: true });
  await writeFile(join(versionDir, ORT_S8_MODEL_FILE), encodeOnnx(signed.proto));
  const usable = !result || result.pass;
  const { qdq, widen } = form;
  return {
    usable,
    note: `onnxruntime form ${ORT_MODEL_FILE}: ${qdq.fusedConvs} Convs as DQ -> Conv -> Q groups (QLinearConv on the CPU provider), ${form.pads} channel pads as Pad, ${
      widen.skipped
        ? `channels not widened (${widen.skipped})`
        : `${widen.widened} Conv outputs widened to a multiple of 16 channels`
    }, residual Conv outputs at ${extras}${headsNote}${result ? `; validation: ${describeAccuracy(result)}` : ''}${
      usable ? '' : ` (misses the target: the onnxruntime backend loads model.onnx instead)`
    }`,
    metadata: {
      file: ORT_MODEL_FILE,
      vnniFile: ORT_S8_MODEL_FILE,
      fusedConvs: qdq.fusedConvs,
      floatOutputs: qdq.floatOutputs,
      quantizedHeads: form.heads,
      residualConvOutputs: extras,
      channelPads: form.pads,
      widened: widen.skipped
        ? { skipped: widen.skipped }
        : { convs: widen.widened, padsRemoved: widen.padsRemoved },
      validation: result ? summaryOf(result, 'the same frames') : null,
      used: usable,
    },
  };
}
