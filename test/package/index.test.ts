// The package API (lib/index.ts) must re-export every library module, so that notebooks and
// other users can import any public name from 'clipfreeze'.
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { PROJECT_ROOT } from '../helpers/shared.ts';

const LIB = path.join(PROJECT_ROOT, 'lib');
const ENTRY_POINTS = ['study/trialProcess.ts', 'train/gradientWorker.ts'];

function modules(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return modules(full);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts') ? [path.relative(LIB, full)] : [];
  });
}

test('index re-exports every module', (t) => {
  const index = fs.readFileSync(path.join(LIB, 'index.ts'), 'utf8');
  // Commands and child-process entry points are not API: importing them has side effects.
  const expected = modules(LIB).filter((m) => !m.startsWith('cli/') && m !== 'index.ts' && !ENTRY_POINTS.includes(m));
  const missing = expected.filter((m) => !index.includes(`export * from './${m.split(path.sep).join('/')}';`));
  t.deepEqual(missing, [], 'add these modules to lib/index.ts');
});

test('index skips entry points', (t) => {
  const index = fs.readFileSync(path.join(LIB, 'index.ts'), 'utf8');
  for (const entry of ENTRY_POINTS) t.false(index.includes(`export * from './${entry}'`), entry);
});

test('package name resolves to index', async (t) => {
  const api = await import('clipfreeze');
  t.is(typeof api.writeReport, 'function');
  t.is(typeof api.loadRuns, 'function');
  t.is(typeof api.initBackend, 'function');
});
