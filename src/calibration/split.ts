import type { CalibrationFile } from './loader.js';

/** Every SPLIT_EVERY-th frame (or folder) is held out for validation. */
export const SPLIT_EVERY = 3;

export interface FrameSplit {
  calibrate: CalibrationFile[];
  validate: CalibrationFile[];
  /** How: by folder when the frames come from two or more folders (or videos), else by file. */
  by: 'folder' | 'file' | 'none';
  /** Held-out folders when split by folder. */
  folders?: string[];
}

/** The folder a frame belongs to: its relative folder, or the video it was extracted from. */
export function frameGroup(f: CalibrationFile): string {
  const hash = f.name.indexOf('#');
  if (hash >= 0) return f.name.slice(0, hash);
  const slash = f.name.lastIndexOf('/');
  return slash >= 0 ? f.name.slice(0, slash) : '.';
}

/**
 * Splits the calibration frames so that validation sees scenes calibration did not: whole folders when there
 * are several (a folder is usually a camera or a scene), else every third file. Fewer than two frames: no split.
 */
export function splitFrames(files: readonly CalibrationFile[]): FrameSplit {
  const groups = [...new Set(files.map(frameGroup))].sort();
  if (groups.length >= 2) {
    let held = groups.filter((_, i) => i % SPLIT_EVERY === SPLIT_EVERY - 1);
    if (held.length === 0) held = [groups[groups.length - 1]];
    const set = new Set(held);
    return {
      calibrate: files.filter((f) => !set.has(frameGroup(f))),
      validate: files.filter((f) => set.has(frameGroup(f))),
      by: 'folder',
      folders: held,
    };
  }
  if (files.length < 2) return { calibrate: [...files], validate: [], by: 'none' };
  let validate = files.filter((_, i) => i % SPLIT_EVERY === SPLIT_EVERY - 1);
  if (validate.length === 0) validate = [files[files.length - 1]];
  const set = new Set(validate);
  return { calibrate: files.filter((f) => !set.has(f)), validate, by: 'file' };
}
