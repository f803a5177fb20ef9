import test from 'ava';
import { execFileSync } from 'node:child_process';
import { PROJECT_ROOT } from './helpers/shared.ts';

// Each case runs in a fresh process because a backend is chosen once per process.
const SINGLE_CALL = "import { initBackend } from './lib/util/backend.ts'; const b = await initBackend(); console.log(JSON.stringify(b));";

function runSelection(env: Record<string, string>, script = SINGLE_CALL): { code: number; output: string } {
  try {
    const output = execFileSync(process.execPath, ['--import=tsx', '--input-type=module', '-e', script], {
      cwd: PROJECT_ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    }).toString();
    return { code: 0, output };
  } catch (err) {
    const e = err as { status: number; stdout: Buffer; stderr: Buffer };
    return { code: e.status, output: e.stdout.toString() + e.stderr.toString() };
  }
}

test('backend defaults to fastest present', (t) => {
  const { code, output } = runSelection({ CLIPFREEZE_BACKEND: '' });
  t.is(code, 0, output);
  const info = JSON.parse(output.trim().split('\n').at(-1)!);
  t.true(['node-gpu', 'node', 'wasm'].includes(info.name), output);
});

test('backend forced to cpu', (t) => {
  const { code, output } = runSelection({ CLIPFREEZE_BACKEND: 'cpu' });
  t.is(code, 0, output);
  t.is(JSON.parse(output.trim().split('\n').at(-1)!).name, 'cpu');
});

test('backend rejects unknown name', (t) => {
  const { code, output } = runSelection({ CLIPFREEZE_BACKEND: 'metal' });
  t.not(code, 0);
  t.regex(output, /Invalid backend 'metal'.*node-gpu, node, wasm, cpu/);
});

test('backend forced but missing fails clearly', (t) => {
  let installed = true;
  try {
    execFileSync(process.execPath, ['-e', "require.resolve('@tensorflow/tfjs-node-gpu')"], { cwd: PROJECT_ROOT, stdio: 'ignore' });
  } catch {
    installed = false;
  }
  if (installed) {
    t.pass('tfjs-node-gpu is installed here, so the missing case cannot be shown');
    return;
  }
  const { code, output } = runSelection({ CLIPFREEZE_BACKEND: 'node-gpu' });
  t.not(code, 0);
  t.regex(output, /Backend 'node-gpu' was requested but failed to load: not installed/);
});

test('backend concurrent calls share one selection', (t) => {
  const script =
    "import { initBackend } from './lib/util/backend.ts'; const [a, b] = await Promise.all([initBackend(), initBackend()]); console.log(JSON.stringify([a.name, b.name, a === b]));";
  const { code, output } = runSelection({ CLIPFREEZE_BACKEND: '' }, script);
  t.is(code, 0, output);
  const [first, second, same] = JSON.parse(output.trim().split('\n').at(-1)!);
  t.is(first, second);
  t.true(same);
});
