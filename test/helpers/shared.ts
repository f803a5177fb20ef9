// Locates ../shared (real data and reference fixtures). Tests that need it skip with a
// visible message when it is missing, unless CLIPFREEZE_REQUIRE_SHARED=1 (set by .ci/run),
// which turns a missing folder into a failure.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const SHARED_DIR = process.env.CLIPFREEZE_SHARED ?? path.resolve(root, '..', 'shared');
export const PROJECT_ROOT = root;

export function sharedPath(...parts: string[]): string {
  return path.join(SHARED_DIR, ...parts);
}

/** Returns true when `parts` exists under ../shared. Throws when it is missing and CI requires it. */
export function hasShared(...parts: string[]): boolean {
  const p = sharedPath(...parts);
  if (fs.existsSync(p)) return true;
  if (process.env.CLIPFREEZE_REQUIRE_SHARED === '1') {
    throw new Error(`Required test data is missing: ${p}. CLIPFREEZE_REQUIRE_SHARED=1 makes this a failure.`);
  }
  console.warn(`SKIP: ${p} not found; tests that need it are skipped.`);
  return false;
}
