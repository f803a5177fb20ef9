// Area under the ROC curve, computed exactly as scikit-learn's roc_auc_score does for a binary
// label: the ROC has one point per distinct score (tied scores move together, giving a diagonal
// step), and the area is the trapezoid rule over those points. Optional integer weights count a
// sample several times, which is how a bootstrap replicate is scored without copying data.

/** Samples ordered by score, descending, with the start index of each group of tied scores. */
export interface RankedScores {
  /** Sample indices sorted by score, highest first. */
  order: Int32Array;
  /** groupStart[g] is the position in `order` where tie group g starts; the last entry is n. */
  groupStart: Int32Array;
}

/** Sorts `scores` once, so that many weightings (bootstrap replicates) can reuse the order. */
export function rankScores(scores: ArrayLike<number>): RankedScores {
  const n = scores.length;
  for (let i = 0; i < n; i++) {
    if (!Number.isFinite(scores[i])) {
      throw new Error(`Invalid score ${scores[i]} at index ${i}: AUROC needs finite scores. Check the model output for NaN or infinity.`);
    }
  }

  const order = Int32Array.from({ length: n }, (_, i) => i);
  order.sort((a, b) => scores[b] - scores[a]);

  const starts: number[] = [];
  for (let k = 0; k < n; k++) {
    if (k === 0 || scores[order[k]] !== scores[order[k - 1]]) starts.push(k);
  }
  starts.push(n);
  return { order, groupStart: Int32Array.from(starts) };
}

/**
 * Computes AUROC from ranked scores. Returns null when only one class is present (after
 * weighting), because the ROC is then undefined; scikit-learn raises in that case.
 */
export function aurocRanked(ranked: RankedScores, labels: ArrayLike<number>, weights?: ArrayLike<number>): number | null {
  const { order, groupStart } = ranked;

  // Walk the tie groups from the highest score down. Each group adds a trapezoid between the
  // previous ROC point (fp0, tp0) and the new one (fp, tp), in unnormalised counts.
  let tp = 0;
  let fp = 0;
  let twiceArea = 0;
  for (let g = 0; g + 1 < groupStart.length; g++) {
    const tp0 = tp;
    const fp0 = fp;
    for (let k = groupStart[g]; k < groupStart[g + 1]; k++) {
      const i = order[k];
      const w = weights ? weights[i] : 1;
      if (labels[i] === 1) tp += w;
      else fp += w;
    }
    twiceArea += (fp - fp0) * (tp + tp0);
  }

  // tp and fp now contain the weighted numbers of positives and negatives.
  if (tp === 0 || fp === 0) return null;
  return twiceArea / (2 * tp * fp);
}

/** Computes AUROC for binary `labels` (0/1) and `scores`, or null when only one class is present. */
export function auroc(labels: ArrayLike<number>, scores: ArrayLike<number>, weights?: ArrayLike<number>): number | null {
  checkBinary(labels, scores.length);
  return aurocRanked(rankScores(scores), labels, weights);
}

/** Throws when `labels` is not a 0/1 vector of length `n`, naming the first bad entry. */
export function checkBinary(labels: ArrayLike<number>, n: number): void {
  if (labels.length !== n) {
    throw new Error(`Labels and scores differ in length (${labels.length} labels, ${n} scores).`);
  }
  for (let i = 0; i < labels.length; i++) {
    if (labels[i] !== 0 && labels[i] !== 1) {
      throw new Error(`Invalid label ${labels[i]} at index ${i}: labels must be 0 or 1.`);
    }
  }
}
