import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { checkInputPaths, ConfigError, flagOf, identityOf, loadTrainConfigFile, parseTrainConfig, TRAIN_KEYS } from '../../lib/train/config.ts';

const minimal = { checkpoint: '/models/clip', data: '/data/cxr' };

test('config fills defaults', (t) => {
  const config = parseTrainConfig(minimal);
  t.is(config.trainUnits, 'all');
  t.is(config.batchSize, 32);
  t.deepEqual(config.limit, { train: null, val: null, test: null });
});

test('config keeps given values', (t) => {
  const config = parseTrainConfig({ ...minimal, lr: 3e-4, limit: { train: 20 }, source: [{ name: 'cifar', path: '/c' }] });
  t.is(config.lr, 3e-4);
  t.deepEqual(config.limit, { train: 20, val: null, test: null });
  t.is(config.source[0].limitPerClass, 10);
});

test('config error names unknown key', (t) => {
  const err = t.throws(() => parseTrainConfig({ ...minimal, learningRate: 1 }), { instanceOf: ConfigError });
  t.regex(err!.message, /unknown key 'learningRate'/);
  t.regex(err!.message, /Allowed keys: .*microBatchSize/);
});

test('config error names enum values', (t) => {
  const err = t.throws(() => parseTrainConfig({ ...minimal, headInit: 'xavier' }));
  t.regex(err!.message, /invalid value for 'headInit': "xavier"\. Allowed values: zero-shot, random/);
});

test('config error names bad number', (t) => {
  const err = t.throws(() => parseTrainConfig({ ...minimal, batchSize: 0 }));
  t.regex(err!.message, /invalid value for 'batchSize': 0 must be >= 1/);
});

test('config error names missing key', (t) => {
  const err = t.throws(() => parseTrainConfig({ data: '/d' }));
  t.regex(err!.message, /missing key 'checkpoint' \(flag --checkpoint\)/);
});

test('config error names nested limit', (t) => {
  const err = t.throws(() => parseTrainConfig({ ...minimal, limit: { tran: 5 } }));
  t.regex(err!.message, /unknown key 'limit\.tran'/);
});

test('config rejects indivisible micro-batch', (t) => {
  const err = t.throws(() => parseTrainConfig({ ...minimal, batchSize: 32, microBatchSize: 5 }));
  t.regex(err!.message, /'batchSize' 32 is not a multiple of 'microBatchSize' 5/);
});

test('config flags are kebab case', (t) => {
  t.is(flagOf('microBatchSize'), '--micro-batch-size');
  t.is(flagOf('lr'), '--lr');
  t.true(TRAIN_KEYS.includes('trainUnits'));
});

test('config file resolves relative paths', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'train-config-'));
  const file = path.join(dir, 'train.json');
  fs.writeFileSync(file, JSON.stringify({ checkpoint: 'models/mini', data: '/abs/data', source: [{ name: 's', path: 'src' }] }));
  const raw = loadTrainConfigFile(file);
  t.is(raw.checkpoint, path.join(dir, 'models/mini'));
  t.is(raw.data, '/abs/data');
  t.is((raw.source as Array<{ path: string }>)[0].path, path.join(dir, 'src'));
  fs.rmSync(dir, { recursive: true });
});

test('config identity ignores output folders', (t) => {
  const a = identityOf(parseTrainConfig({ ...minimal, runs: '/r1' }));
  const b = identityOf(parseTrainConfig({ ...minimal, runs: '/r2', cacheDir: '/c' }));
  t.deepEqual(a, b);
  t.notDeepEqual(a, identityOf(parseTrainConfig({ ...minimal, seed: 1 })));
});

test('config dataset options default empty', (t) => {
  const config = parseTrainConfig(minimal);
  t.deepEqual(config.datasetOptions, {});
  t.true(config.evaluateTest);
});

test('config rejects non-object dataset options', (t) => {
  const error = t.throws(() => parseTrainConfig({ ...minimal, datasetOptions: [1, 2] }), { instanceOf: ConfigError });
  t.regex(error!.message, /invalid value for 'datasetOptions'/);
});

test('config rejects limit in dataset options', (t) => {
  const error = t.throws(() => parseTrainConfig({ ...minimal, datasetOptions: { limit: 4 } }), { instanceOf: ConfigError });
  t.regex(error!.message, /'datasetOptions\.limit' is not allowed/);
});

test('config identity includes dataset options', (t) => {
  const plain = identityOf(parseTrainConfig(minimal));
  const withOptions = identityOf(parseTrainConfig({ ...minimal, datasetOptions: { positiveMinAreaMm2: 200 } }));
  t.notDeepEqual(plain, withOptions);
  t.deepEqual(withOptions.datasetOptions, { positiveMinAreaMm2: 200 });
});

test('config identity omits new defaults', (t) => {
  // Runs recorded before datasetOptions and evaluateTest existed must keep their run ids.
  const identity = identityOf(parseTrainConfig(minimal));
  t.false('datasetOptions' in identity);
  t.false('evaluateTest' in identity);
  t.is(identityOf(parseTrainConfig({ ...minimal, evaluateTest: false })).evaluateTest, false);
});

test('config file resolves dataset option paths', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'train-config-'));
  const file = path.join(dir, 'train.json');
  fs.writeFileSync(file, JSON.stringify({ ...minimal, datasetOptions: { splitFile: 'splits.csv', mode: 'slice' } }));
  const raw = loadTrainConfigFile(file);
  t.deepEqual(raw.datasetOptions, { splitFile: path.join(dir, 'splits.csv'), mode: 'slice' });
  fs.rmSync(dir, { recursive: true });
});

test('input paths: missing option file', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'train-paths-'));
  const labelFile = path.join(dir, 'labels.csv');
  const config = parseTrainConfig({ checkpoint: dir, data: dir, datasetOptions: { labelFile, cacheDir: path.join(dir, 'cache') } });
  const error = t.throws(() => checkInputPaths(config), { instanceOf: ConfigError });
  t.true(error!.message.includes(`File not found: ${labelFile} ('datasetOptions.labelFile'`), error!.message);

  // A cache folder is an output, so only the label file has to exist.
  fs.writeFileSync(labelFile, 'Image Index\n');
  t.notThrows(() => checkInputPaths(config));
  fs.rmSync(dir, { recursive: true });
});

test('config rejects huge bootstrap', (t) => {
  const error = t.throws(() => parseTrainConfig({ ...minimal, bootstrap: 1e9 }), { instanceOf: ConfigError });
  t.regex(error!.message, /invalid value for 'bootstrap': 1000000000 must be <= 100000/);
});

test('config error names thread forms', (t) => {
  for (const trainThreads of [0, '2', 1.5]) {
    const error = t.throws(() => parseTrainConfig({ checkpoint: 'c', data: 'd', trainThreads }), { instanceOf: ConfigError });
    t.regex(error!.message, /invalid value for 'trainThreads': .*Use a positive integer or "auto"/);
    t.notRegex(error!.message, /constant/);
  }
});

test('config accepts thread forms', (t) => {
  t.is(parseTrainConfig({ checkpoint: 'c', data: 'd', trainThreads: 'auto' }).trainThreads, 'auto');
  t.is(parseTrainConfig({ checkpoint: 'c', data: 'd', trainThreads: 2 }).trainThreads, 2);
});
