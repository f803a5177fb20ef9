// Shared access to the clip-mini reference fixture for the model and checkpoint tests.
import fs from 'node:fs';
import { readSafetensorsHeader, readTensor } from '../../lib/clip/safetensors.ts';
import { sharedPath } from '../helpers/shared.ts';

export const FIXTURE = ['fixtures', 'clip-mini'] as const;

export function fixturePath(...parts: string[]): string {
  return sharedPath(...FIXTURE, ...parts);
}

export interface Reference {
  token_ids: number[][];
  image_features: number[][];
  text_features: number[][];
  logits_per_image: number[][];
  logits_per_text: number[][];
  vision_block_cls: number[][][];
  vision_block_mean: number[][][];
  text_block_eot: number[][][];
  loss: { loss_weights: number[][]; value: number };
  grad_l2_norms: Record<string, number>;
  param_l2_norms: Record<string, number>;
}

export function readReference(): Reference {
  return JSON.parse(fs.readFileSync(fixturePath('reference.json'), 'utf8')) as Reference;
}

/** Reference pixels, float32 NCHW [5, 3, 224, 224]. */
export function readPixels(): Float32Array {
  const header = readSafetensorsHeader(fixturePath('pixel_values.safetensors'));
  return readTensor(header.tensors.get('pixel_values')!);
}

/**
 * Returns the first element where |actual - expected| exceeds tolerance * max(1, |expected|)
 * (absolute below 1, relative above), or null when all match.
 */
export function firstMismatch(actual: number[], expected: number[], tolerance: number): string | null {
  if (actual.length !== expected.length) return `length ${actual.length}, expected ${expected.length}`;
  for (let i = 0; i < actual.length; i++) {
    const error = Math.abs(actual[i] - expected[i]);
    if (!(error <= tolerance * Math.max(1, Math.abs(expected[i])))) {
      return `element ${i}: ${actual[i]}, expected ${expected[i]} (difference ${error.toExponential(2)})`;
    }
  }
  return null;
}
