import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { openImageFolder, sampleImageFolder } from '../../lib/data/imageFolder.ts';
import { hasShared, sharedPath } from '../helpers/shared.ts';

const naturalTest = hasShared('data', 'natural') ? test : test.skip;

function makeTree(files: string[]): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-folder-'));
  for (const file of files) {
    fs.mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
    fs.writeFileSync(path.join(root, file), '');
  }
  return root;
}

test('plain folder per class', (t) => {
  const root = makeTree(['sea_lion/1.jpg', 'sea_lion/2.PNG', 'cat/a.jpeg', 'cat/notes.txt', 'empty/readme.md']);
  const set = openImageFolder(root);
  t.deepEqual(set.classFolders, ['cat', 'sea_lion']);
  t.deepEqual(set.classNames, ['cat', 'sea lion']);
  t.is(set.samples.length, 3);
  t.is(set.classRoot, root);
  t.is(set.name, path.basename(root));
});

test('split folder and classes.txt', (t) => {
  const root = makeTree(['val/n01/a.JPEG', 'val/n02/b.JPEG', 'val/n02/c.JPEG']);
  fs.writeFileSync(path.join(root, 'classes.txt'), 'n01\ttench\nn02\tEnglish springer\n');
  const set = openImageFolder(root, { name: 'imagenette' });
  t.is(set.classRoot, path.join(root, 'val'));
  t.deepEqual(set.classNames, ['tench', 'English springer']);
  t.deepEqual(set.samples.map((s) => s.label), [0, 1, 1]);
  t.is(set.name, 'imagenette');
});

test('missing folder is rejected', (t) => {
  const error = t.throws(() => openImageFolder('/nonexistent/clipfreeze/images'));
  t.regex(error?.message ?? '', /Image folder not found: \/nonexistent\/clipfreeze\/images/);
});

test('folder without class folders is rejected', (t) => {
  const root = makeTree(['a.jpg', 'b.jpg']);
  t.throws(() => openImageFolder(root), { message: /No class folders with images found/ });
});

test('single class is rejected', (t) => {
  const root = makeTree(['only/a.jpg']);
  t.throws(() => openImageFolder(root), { message: /needs at least 2/ });
});

test('invalid classes.txt line is rejected', (t) => {
  const root = makeTree(['a/1.jpg', 'b/1.jpg']);
  fs.writeFileSync(path.join(root, 'classes.txt'), 'a apple\nbanana\n');
  t.throws(() => openImageFolder(root), { message: /Invalid line 2/ });
});

test('seeded sample per class', (t) => {
  const files = [...Array.from({ length: 10 }, (_, i) => `a/${i}.jpg`), ...Array.from({ length: 3 }, (_, i) => `b/${i}.jpg`)];
  const set = openImageFolder(makeTree(files));
  const first = sampleImageFolder(set, 4, 1);
  t.deepEqual(first.map((s) => s.label), [0, 0, 0, 0, 1, 1, 1]);
  t.deepEqual(sampleImageFolder(set, 4, 1), first);
  t.notDeepEqual(sampleImageFolder(set, 4, 2), first);
  t.is(sampleImageFolder(set, undefined, 1).length, 13);
});

naturalTest('shared natural sets open', (t) => {
  const cifar = openImageFolder(sharedPath('data', 'natural', 'cifar10-test'));
  t.is(cifar.classNames.length, 10);
  t.is(cifar.samples.length, 5000);
  t.is(cifar.classNames[0], 'airplane');
  const imagenette = openImageFolder(sharedPath('data', 'natural', 'imagenette-val'));
  t.is(imagenette.samples.length, 1000);
  t.true(imagenette.classNames.includes('English springer'));
  t.true(imagenette.classNames.includes('tench'));
});
