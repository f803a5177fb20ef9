import test from 'ava';
import { bootstrapAuroc, percentile } from '../../lib/eval/bootstrap.ts';
import { createRng, randomNormal } from '../../lib/util/rng.ts';

// 60 patients, one image each, two findings with signal and one with a single positive.
function makeData(seed: number) {
  const rng = createRng(seed);
  const n = 60;
  const patients = Array.from({ length: n }, (_, i) => `p${i}`);
  const labels: number[][] = [[], [], []];
  const scores: number[][] = [[], [], []];
  for (let i = 0; i < n; i++) {
    for (let f = 0; f < 2; f++) {
      const y = rng() < 0.4 ? 1 : 0;
      labels[f].push(y);
      scores[f].push(y + randomNormal(rng));
    }
    labels[2].push(i === 7 ? 1 : 0);
    scores[2].push(rng());
  }
  return { patients, labels, scores };
}

test('bootstrap same seed same intervals', (t) => {
  const { patients, labels, scores } = makeData(1);
  const a = bootstrapAuroc(labels, scores, patients, { samples: 200, seed: 5 });
  const b = bootstrapAuroc(labels, scores, patients, { samples: 200, seed: 5 });
  t.deepEqual(a, b);
});

test('bootstrap other seed other intervals', (t) => {
  const { patients, labels, scores } = makeData(1);
  const a = bootstrapAuroc(labels, scores, patients, { samples: 200, seed: 5 });
  const b = bootstrapAuroc(labels, scores, patients, { samples: 200, seed: 6 });
  t.notDeepEqual(a.ci[0], b.ci[0]);
});

test('bootstrap interval brackets estimate', (t) => {
  const { patients, labels, scores } = makeData(2);
  const result = bootstrapAuroc(labels, scores, patients, { samples: 300, seed: 0 });
  const [lo, hi] = result.ci[0]!;
  t.true(lo < hi, `interval [${lo}, ${hi}]`);
  t.true(lo > 0.5 && hi <= 1, `interval [${lo}, ${hi}] for a finding with signal`);
  t.truthy(result.meanCi);
});

// Repeating every image of a patient changes nothing when patients are the resampling unit,
// because AUROC is invariant to scaling all weights of a patient's images together. Resampling
// images instead would treat the copies as independent and narrow the interval.
test('bootstrap resamples patients not images', (t) => {
  const { patients, labels, scores } = makeData(3);
  const copies = 4;
  const repeat = <T>(values: T[]) => values.flatMap((v) => Array<T>(copies).fill(v));

  const single = bootstrapAuroc(labels, scores, patients, { samples: 200, seed: 9 });
  const repeated = bootstrapAuroc(labels.map(repeat), scores.map(repeat), repeat(patients), { samples: 200, seed: 9 });
  for (const f of [0, 1]) {
    t.true(Math.abs(single.ci[f]![0] - repeated.ci[f]![0]) < 1e-12, `finding ${f} lower bound`);
    t.true(Math.abs(single.ci[f]![1] - repeated.ci[f]![1]) < 1e-12, `finding ${f} upper bound`);
  }
});

test('bootstrap counts undefined replicates', (t) => {
  const { patients, labels, scores } = makeData(4);
  const samples = 400;
  const result = bootstrapAuroc(labels, scores, patients, { samples, seed: 1 });

  // The one positive patient is left out of a replicate with probability (1 - 1/60)^60, about 0.364.
  const expected = samples * Math.pow(1 - 1 / 60, 60);
  t.true(Math.abs(result.skipped[2] - expected) < 40, `skipped ${result.skipped[2]}, expected about ${expected.toFixed(0)}`);
  t.is(result.skipped[0], 0);
  t.is(result.meanPartial, result.skipped[2]);
});

test('bootstrap rejects invalid sample count', (t) => {
  const { patients, labels, scores } = makeData(1);
  t.throws(() => bootstrapAuroc(labels, scores, patients, { samples: 2.5, seed: 0 }), { message: /Invalid bootstrap sample count 2.5/ });
});

test('percentile interpolates like numpy', (t) => {
  // numpy.percentile([1, 2, 3, 4], [2.5, 50, 97.5]) = [1.075, 2.5, 3.925]
  const sorted = [1, 2, 3, 4];
  t.true(Math.abs(percentile(sorted, 0.025) - 1.075) < 1e-12);
  t.is(percentile(sorted, 0.5), 2.5);
  t.true(Math.abs(percentile(sorted, 0.975) - 3.925) < 1e-12);
});

test('bootstrap rejects huge sample count', (t) => {
  const { patients, labels, scores } = makeData(1);
  const error = t.throws(() => bootstrapAuroc(labels, scores, patients, { samples: 1e9, seed: 0 }));
  t.regex(error!.message, /Invalid bootstrap sample count 1000000000: the maximum is 100000 replicates/);
});
