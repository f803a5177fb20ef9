import test from 'ava';
import fs from 'node:fs';
import { auroc } from '../../lib/eval/auroc.ts';
import { averagePrecision } from '../../lib/eval/averagePrecision.ts';
import { hasShared, sharedPath } from '../helpers/shared.ts';

const sharedTest = hasShared('fixtures', 'metrics', 'auroc_cases.json') ? test : test.skip;

interface Case {
  name: string;
  labels: number[];
  scores: number[];
  auroc: number | null;
  average_precision: number | null;
}

interface Fixture {
  cases: Case[];
  multilabel: {
    labels: number[][];
    scores: number[][];
    per_label_auroc: Array<number | null>;
    mean_auroc_over_defined_labels: number;
    micro_auroc: number;
  };
}

function loadFixture(): Fixture {
  return JSON.parse(fs.readFileSync(sharedPath('fixtures', 'metrics', 'auroc_cases.json'), 'utf8')) as Fixture;
}

function assertClose(t: import('ava').ExecutionContext, actual: number | null, expected: number | null, what: string): void {
  if (expected === null) {
    t.is(actual, null, `${what}: expected undefined (null)`);
    return;
  }
  t.not(actual, null, `${what}: expected ${expected}, got null`);
  t.true(Math.abs((actual as number) - expected) <= 1e-9, `${what}: expected ${expected}, got ${actual}`);
}

sharedTest('auroc matches scikit-learn cases', (t) => {
  for (const c of loadFixture().cases) {
    assertClose(t, auroc(c.labels, c.scores), c.auroc, `AUROC of '${c.name}'`);
  }
});

sharedTest('average precision matches scikit-learn cases', (t) => {
  for (const c of loadFixture().cases) {
    assertClose(t, averagePrecision(c.labels, c.scores), c.average_precision, `AP of '${c.name}'`);
  }
});

sharedTest('auroc matches multi-label matrix', (t) => {
  const m = loadFixture().multilabel;
  const columns = m.per_label_auroc.length;
  t.is(m.labels[0].length, columns);

  const perLabel = Array.from({ length: columns }, (_, f) =>
    auroc(
      m.labels.map((row) => row[f]),
      m.scores.map((row) => row[f]),
    ),
  );
  perLabel.forEach((value, f) => assertClose(t, value, m.per_label_auroc[f], `label ${f}`));

  const defined = perLabel.filter((v): v is number => v !== null);
  assertClose(t, defined.reduce((a, b) => a + b, 0) / defined.length, m.mean_auroc_over_defined_labels, 'mean over defined labels');
  assertClose(t, auroc(m.labels.flat(), m.scores.flat()), m.micro_auroc, 'micro AUROC');
});

test('auroc rejects non-binary labels', (t) => {
  t.throws(() => auroc([0, 2, 1], [0.1, 0.2, 0.3]), { message: /Invalid label 2 at index 1/ });
});

test('auroc rejects NaN scores', (t) => {
  t.throws(() => auroc([0, 1], [0.1, NaN]), { message: /Invalid score NaN at index 1/ });
});

test('auroc weights equal repetition', (t) => {
  const labels = [0, 1, 1, 0, 1, 0];
  const scores = [0.2, 0.4, 0.4, 0.1, 0.9, 0.4];
  const weights = [2, 1, 3, 0, 1, 2];
  const repeatedLabels = labels.flatMap((l, i) => Array<number>(weights[i]).fill(l));
  const repeatedScores = scores.flatMap((s, i) => Array<number>(weights[i]).fill(s));
  t.is(auroc(labels, scores, weights), auroc(repeatedLabels, repeatedScores));
  t.is(averagePrecision(labels, scores, weights), averagePrecision(repeatedLabels, repeatedScores));
});
