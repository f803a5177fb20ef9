// Intensity mapping from CT Hounsfield units or MRI intensities to 8-bit greyscale, the
// input CLIP's preprocessing expects.

/** A display window in the units of the image (HU for CT): values in [center - width/2, center + width/2] map to 0..255. */
export interface IntensityWindow {
  center: number;
  width: number;
}

/** The usual lung window (center -600 HU, width 1500 HU): air is black, nodules and vessels bright. */
export const LUNG_WINDOW: IntensityWindow = { center: -600, width: 1500 };

/** The usual mediastinal (soft tissue) window: center 40 HU, width 400 HU. */
export const MEDIASTINAL_WINDOW: IntensityWindow = { center: 40, width: 400 };

/** The usual bone window: center 400 HU, width 1800 HU. */
export const BONE_WINDOW: IntensityWindow = { center: 400, width: 1800 };

/**
 * Maps values through three windows into interleaved RGB (one window per channel), so one
 * image carries lung, soft-tissue and bone contrast for a pretrained RGB encoder.
 */
export function applyRgbWindows(values: ArrayLike<number>, windows: [IntensityWindow, IntensityWindow, IntensityWindow]): Uint8Array {
  const channels = windows.map((window) => applyWindow(values, window));
  const rgb = new Uint8Array(values.length * 3);
  for (let i = 0; i < values.length; i++) {
    rgb[3 * i] = channels[0][i];
    rgb[3 * i + 1] = channels[1][i];
    rgb[3 * i + 2] = channels[2][i];
  }
  return rgb;
}

/** Maps values through a window to 0..255, clamping outside it. */
export function applyWindow(values: ArrayLike<number>, window: IntensityWindow): Uint8Array {
  if (!(window.width > 0)) throw new RangeError(`invalid window width ${window.width}: it must be > 0.`);
  const low = window.center - window.width / 2;
  const scale = 255 / window.width;
  const out = new Uint8Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = (values[i] - low) * scale;
    if (v >= 255) out[i] = 255;
    else if (v > 0) out[i] = Math.round(v);
    else out[i] = 0; // Also NaN.
  }
  return out;
}

/**
 * Returns the window spanning the given lower and upper percentiles (0-100) of the values
 * selected by `mask` (all values when no mask). MRI has no absolute scale like HU, so a
 * per-volume percentile window inside the brain is the usual 8-bit mapping.
 */
export function percentileWindow(values: ArrayLike<number>, lowPercent: number, highPercent: number, mask?: ArrayLike<number>): IntensityWindow {
  const selected: number[] = [];
  for (let i = 0; i < values.length; i++) {
    if ((mask === undefined || mask[i] > 0) && Number.isFinite(values[i])) selected.push(values[i]);
  }
  if (selected.length === 0) return { center: 0, width: 1 };
  const sorted = Float64Array.from(selected).sort();
  const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.round((p / 100) * (sorted.length - 1))))];
  const low = at(lowPercent);
  const high = at(highPercent);
  const width = high > low ? high - low : 1;
  return { center: low + width / 2, width };
}
