import test from 'ava';
import { auroc } from '../../lib/eval/auroc.ts';
import { evaluatePredictions } from '../../lib/eval/metrics.ts';
import type { Predictions } from '../../lib/eval/predictions.ts';
import { createRng, randomNormal } from '../../lib/util/rng.ts';

// Three findings: one with signal, one with noise only, one with no positives (undefined).
function makePredictions(n: number, seed: number): Predictions {
  const rng = createRng(seed);
  const rows: Predictions['rows'] = [];
  for (let i = 0; i < n; i++) {
    const a = rng() < 0.3 ? 1 : 0;
    const b = rng() < 0.5 ? 1 : 0;
    rows.push({
      image: `img${i}.png`,
      patient: `p${Math.floor(i / 2)}`,
      split: 'test',
      labels: [a, b, 0],
      scores: [a + randomNormal(rng), rng(), rng()],
    });
  }
  return { findings: ['Mass', 'Nodule', 'Hernia'], rows };
}

test('metrics exclude undefined findings', (t) => {
  const predictions = makePredictions(120, 1);
  const m = evaluatePredictions(predictions, { bootstrap: 0 });
  const column = (f: number, key: 'labels' | 'scores') => predictions.rows.map((r) => r[key][f]);
  const mass = auroc(column(0, 'labels'), column(0, 'scores'))!;
  const nodule = auroc(column(1, 'labels'), column(1, 'scores'))!;

  t.is(m.perFinding.Hernia.auroc, null);
  t.is(m.perFinding.Hernia.ap, null);
  t.is(m.definedFindings, 2);
  t.is(m.meanAuroc, (mass + nodule) / 2);
  t.is(m.perFinding.Mass.auroc, mass);
});

test('metrics count images and patients', (t) => {
  const predictions = makePredictions(120, 2);
  const m = evaluatePredictions(predictions, { bootstrap: 0 });
  const positives = predictions.rows.filter((r) => r.labels[0] === 1).length;
  t.is(m.n, 120);
  t.is(m.patients, 60);
  t.is(m.split, 'test');
  t.is(m.perFinding.Mass.positives, positives);
  t.is(m.perFinding.Mass.negatives, 120 - positives);
  t.is(m.perFinding.Hernia.positives, 0);
});

test('metrics without bootstrap have no intervals', (t) => {
  const m = evaluatePredictions(makePredictions(50, 3), { bootstrap: 0 });
  t.is(m.perFinding.Mass.ci, null);
  t.is(m.meanAurocCi, null);
  t.deepEqual(m.bootstrap, { samples: 0, seed: 0, unit: 'patient', skipped: { Mass: 0, Nodule: 0, Hernia: 0 }, meanPartial: 0 });
});

test('metrics bootstrap is seeded', (t) => {
  const predictions = makePredictions(80, 4);
  const a = evaluatePredictions(predictions, { bootstrap: 100, seed: 3 });
  const b = evaluatePredictions(predictions, { bootstrap: 100, seed: 3 });
  t.deepEqual(a, b);
  t.not(a.perFinding.Mass.ci, null);
  t.not(a.meanAurocCi, null);
  t.is(a.perFinding.Hernia.ci, null);
  t.is(a.bootstrap.skipped.Hernia, 100);
});

test('metrics report mixed splits', (t) => {
  const predictions = makePredictions(10, 5);
  predictions.rows[0].split = 'val';
  t.is(evaluatePredictions(predictions, { bootstrap: 0 }).split, 'mixed');
});
