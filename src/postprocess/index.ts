import { blazefacePostprocessor } from './blazeface.js';
import { faceLandmarksEntry } from './face-landmarks.js';
import { registerPostprocessor } from './registry.js';

// The built-in postprocessors. Another registers the same way, from its own file (one entry, one name).
registerPostprocessor(blazefacePostprocessor);
registerPostprocessor(faceLandmarksEntry);

export {
  postprocess,
  postprocessorFor,
  postprocessorNames,
  registerPostprocessor,
  type Postprocessed,
  type PostprocessingSpec,
  type Postprocessor,
  type PostprocessorName,
  type PostprocessorPresentation,
  type PostprocessorRole,
  type PostprocessorTypes,
} from './registry.js';
export { SELECTED_PREFIX, selectedRowsOf, type SelectedRows } from './selected-rows.js';
export {
  faceDetectorFor,
  faceLandmarkerFor,
  facesOf,
  yieldsFaces,
  type Face,
  type FaceDetector,
  type FaceDetectorRole,
  type FaceLandmarker,
  type FaceLandmarkerRole,
  type FaceLandmarks,
} from './roles.js';
