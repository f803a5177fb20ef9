import test from 'ava';
import { RidgeSurrogate, type Observation } from '../../lib/strategies/surrogate.ts';

const EFFECTS = [0.05, -0.03, 0.02, 0.0];

function observations(): Observation[] {
  const out: Observation[] = [];
  for (let bits = 0; bits < 16; bits++) {
    const mask = [0, 1, 2, 3].map((i) => ((bits >> i) & 1 ? '1' : '0')).join('');
    const value = 0.6 + EFFECTS.reduce((s, e, i) => s + (mask[i] === '1' ? e : 0), 0);
    out.push({ mask, truncate: 0, budget: 1, value });
  }
  return out;
}

test('surrogate recovers additive effects', (t) => {
  const surrogate = new RidgeSurrogate(4, { interactions: false, ridge: 1e-6 });
  surrogate.fit(observations());
  const effects = surrogate.unitEffects(observations());
  EFFECTS.forEach((expected, i) => t.true(Math.abs(effects[i] - expected) < 1e-6, `unit ${i}: ${effects[i]} vs ${expected}`));
});

test('surrogate predicts unseen mask', (t) => {
  const seen = observations().filter((o) => o.mask !== '1010');
  const surrogate = new RidgeSurrogate(4, { interactions: false, ridge: 1e-6 });
  surrogate.fit(seen);
  t.true(Math.abs(surrogate.predict({ mask: '1010', truncate: 0 }).mean - 0.67) < 1e-5);
});

test('surrogate uncertainty larger off data', (t) => {
  const seen = observations().filter((o) => o.mask.startsWith('0'));
  const surrogate = new RidgeSurrogate(4, { interactions: true });
  surrogate.fit(seen.map((o, i) => ({ ...o, value: o.value + (i % 3) * 0.01 })));
  const onData = surrogate.predict({ mask: '0110', truncate: 0 }).std;
  const offData = surrogate.predict({ mask: '1110', truncate: 0 }).std;
  t.true(offData > onData, `std off data ${offData}, on data ${onData}`);
});

test('surrogate rejects wrong mask length', (t) => {
  const surrogate = new RidgeSurrogate(4);
  surrogate.fit(observations());
  t.throws(() => surrogate.predict({ mask: '101', truncate: 0 }), { message: /Mask '101' has 3 units, expected 4/ });
});
