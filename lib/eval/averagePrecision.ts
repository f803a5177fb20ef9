// Average precision as scikit-learn's average_precision_score computes it: the step sum
// AP = sum_k (R_k - R_{k-1}) * P_k over the distinct score thresholds from the highest down,
// with no interpolation. Tied scores form one threshold, as in auroc.ts.
import { checkBinary, rankScores, type RankedScores } from './auroc.ts';

/**
 * Computes AP from ranked scores. Returns null when only one class is present: with no
 * positives recall is undefined, and with no negatives AP is 1 whatever the scores.
 */
export function averagePrecisionRanked(ranked: RankedScores, labels: ArrayLike<number>, weights?: ArrayLike<number>): number | null {
  const { order, groupStart } = ranked;

  let positives = 0;
  let negatives = 0;
  for (let k = 0; k < order.length; k++) {
    const i = order[k];
    const w = weights ? weights[i] : 1;
    if (labels[i] === 1) positives += w;
    else negatives += w;
  }
  if (positives === 0 || negatives === 0) return null;

  let tp = 0;
  let fp = 0;
  let sum = 0;
  for (let g = 0; g + 1 < groupStart.length; g++) {
    const tp0 = tp;
    for (let k = groupStart[g]; k < groupStart[g + 1]; k++) {
      const i = order[k];
      const w = weights ? weights[i] : 1;
      if (labels[i] === 1) tp += w;
      else fp += w;
    }
    // Recall only grows at thresholds that add positives, so other groups add nothing.
    if (tp > tp0) sum += ((tp - tp0) / positives) * (tp / (tp + fp));
  }
  return sum;
}

/**
 * Computes average precision for binary `labels` (0/1) and `scores`. Returns null when only
 * one class is present, as AUROC does, so that the two are defined for the same findings.
 */
export function averagePrecision(labels: ArrayLike<number>, scores: ArrayLike<number>, weights?: ArrayLike<number>): number | null {
  checkBinary(labels, scores.length);
  return averagePrecisionRanked(rankScores(scores), labels, weights);
}
