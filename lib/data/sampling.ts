// Seeded subsets of a multi-label split, for runs on a CPU. A plain random subset of a few
// hundred ChestX-ray14 images often has no Hernia or Edema positive, which leaves those
// findings' AUROC undefined. So the sample is stratified by finding. Findings are served from
// the rarest up, and each gets its share of positives (at least one). The rest is random.
import { SPLITS, type Sample, type Split } from './dataset.ts';
import { createRng, shuffleInPlace } from '../util/rng.ts';

/**
 * Returns `limit` samples chosen by `seed`, in their original order. Every finding with a
 * positive in `samples` gets at least one positive while `limit` allows. Each finding gets at
 * least its share round(limit * positives / samples.length) of positives, and may get more
 * because images carry several findings. Returns all samples when `limit` is at least their number.
 */
export function stratifiedSample(samples: Sample[], limit: number, seed: number): Sample[] {
  if (!Number.isInteger(limit) || limit < 0) throw new Error(`Invalid sample limit ${limit}: use a non-negative integer.`);
  if (limit >= samples.length) return samples;

  const rng = createRng(seed);
  const order = shuffleInPlace(samples.map((_, i) => i), rng);
  const findingCount = samples[0]?.labels.length ?? 0;

  const positives = new Array<number>(findingCount).fill(0);
  for (const sample of samples) sample.labels.forEach((y, f) => (positives[f] += y));

  // Serve findings from the rarest, so common findings do not use up the budget first.
  const findings = positives
    .map((count, f) => ({ f, count }))
    .filter((x) => x.count > 0)
    .sort((a, b) => a.count - b.count || a.f - b.f);

  const chosen = new Set<number>();
  const chosenPositives = new Array<number>(findingCount).fill(0);
  const choose = (i: number) => {
    chosen.add(i);
    samples[i].labels.forEach((y, f) => (chosenPositives[f] += y));
  };

  for (const { f, count } of findings) {
    const target = Math.max(1, Math.round((limit * count) / samples.length));
    for (const i of order) {
      if (chosen.size >= limit || chosenPositives[f] >= target) break;
      if (!chosen.has(i) && samples[i].labels[f] === 1) choose(i);
    }
  }

  // Fill the rest in shuffled order.
  for (const i of order) {
    if (chosen.size >= limit) break;
    if (!chosen.has(i)) choose(i);
  }

  return [...chosen].sort((a, b) => a - b).map((i) => samples[i]);
}

/** Replaces each split in `bySplit` by its stratified sample when `limit` (one number, or one per split) sets a size. */
export function limitSplits(bySplit: Record<Split, Sample[]>, limit: number | Partial<Record<Split, number>> | undefined, seed: number): void {
  for (const split of SPLITS) {
    const size = typeof limit === 'number' ? limit : limit?.[split];
    if (size !== undefined) bySplit[split] = stratifiedSample(bySplit[split], size, seed);
  }
}
