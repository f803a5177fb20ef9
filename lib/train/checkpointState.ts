// Per-epoch training state, saved so that a killed run resumes without repeating finished
// epochs and ends with the same weights as an uninterrupted run.
//
//   <run>/state/tensors-<epoch>.bin   trainable weights, AdamW moments m and v, best weights
//                                     (float32, little-endian, concatenated)
//   <run>/state/state.json            epoch, step, early-stopping counters, history, the next
//                                     epoch's data order, and the offset of every tensor
//
// The binary file is written and fsynced first, then state.json is replaced atomically, and
// only then is the previous binary deleted. state.json is the commit point: a crash at any
// moment leaves the last complete state readable.
import fs from 'node:fs';
import path from 'node:path';
import { readJson, writeJsonAtomic } from '../util/atomic.ts';

export type TensorGroup = 'weights' | 'm' | 'v' | 'best';

export interface SavedTensor {
  shape: number[];
  data: Float32Array;
}

export type TensorSet = Record<TensorGroup, Record<string, SavedTensor>>;

export interface EpochRecord {
  epoch: number;
  trainLoss: number;
  valMeanAuroc: number | null;
  lr: number;
  seconds: number;
  /** Optimiser updates completed by the end of this epoch. */
  step: number;
}

/** Everything except tensors: counters, history and the next epoch's data order. */
export interface TrainStateMeta {
  /** Epochs completed (also the index of the next epoch). */
  epoch: number;
  /** Optimiser updates completed. */
  step: number;
  /** AdamW's bias-correction step count. */
  optimizerStep: number;
  bestValMeanAuroc: number | null;
  /** Epoch (1-based) whose weights are `best`; 0 = the initial weights. */
  bestEpoch: number;
  /** Consecutive epochs without a better validation mean AUROC. */
  epochsWithoutImprovement: number;
  /** True once training has stopped (all epochs, step cap or early stopping). */
  finished: boolean;
  history: EpochRecord[];
  /** Sample ids of the training split in the order the next epoch visits them. */
  nextOrder: string[];
  /** Seconds spent so far, carried over a resume. */
  trainSeconds: number;
  evalSeconds: number;
  imagesSeen: number;
  /**
   * Images scored by validation passes so far, and activation cache lookups so far, carried over
   * a resume. Absent in states saved by older versions, which a resume reads as 0.
   */
  evalImages?: number;
  activationCacheHits?: number;
  activationCacheMisses?: number;
}

interface StateFile extends TrainStateMeta {
  format: 'clipfreeze-train-state-1';
  tensorsFile: string;
  tensors: Array<{ group: TensorGroup; name: string; shape: number[]; offset: number; length: number }>;
}

const STATE_FILE = 'state.json';

export function stateDir(runDir: string): string {
  return path.join(runDir, 'state');
}

/** Saves the state atomically (see the file header) and removes older tensor files. */
export function saveTrainState(runDir: string, meta: TrainStateMeta, tensors: TensorSet): void {
  const dir = stateDir(runDir);
  fs.mkdirSync(dir, { recursive: true });
  const tensorsFile = `tensors-${meta.epoch}-${meta.step}.bin`;
  const tmp = path.join(dir, `${tensorsFile}.tmp-${process.pid}`);
  const index: StateFile['tensors'] = [];

  const fd = fs.openSync(tmp, 'w');
  try {
    let offset = 0;
    for (const group of ['weights', 'm', 'v', 'best'] as const) {
      for (const [name, tensor] of Object.entries(tensors[group])) {
        const bytes = new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength);
        fs.writeSync(fd, bytes);
        index.push({ group, name, shape: tensor.shape, offset, length: tensor.data.length });
        offset += bytes.byteLength;
      }
    }
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, path.join(dir, tensorsFile));

  const state: StateFile = { format: 'clipfreeze-train-state-1', ...meta, tensorsFile, tensors: index };
  writeJsonAtomic(path.join(dir, STATE_FILE), state);

  for (const name of fs.readdirSync(dir)) {
    if (name.startsWith('tensors-') && name !== tensorsFile) fs.rmSync(path.join(dir, name), { force: true });
  }
}

/** Loads the last saved state, or returns null when the run has none. */
export function loadTrainState(runDir: string): { meta: TrainStateMeta; tensors: TensorSet } | null {
  const file = path.join(stateDir(runDir), STATE_FILE);
  if (!fs.existsSync(file)) return null;
  const state = readJson<StateFile>(file);
  if (state.format !== 'clipfreeze-train-state-1') {
    throw new Error(`Unsupported training state format '${state.format}' in ${file}. Delete the run folder to start the run again.`);
  }

  const binary = path.join(stateDir(runDir), state.tensorsFile);
  const buffer = fs.readFileSync(binary);
  const tensors: TensorSet = { weights: {}, m: {}, v: {}, best: {} };
  for (const entry of state.tensors) {
    const end = entry.offset + entry.length * 4;
    if (end > buffer.byteLength) {
      throw new Error(`Training state ${binary} is truncated: tensor '${entry.name}' ends at byte ${end} of ${buffer.byteLength}. Delete the run folder to start again.`);
    }
    // Copy into an aligned buffer; the file buffer's offset need not be a multiple of 4.
    const data = new Float32Array(entry.length);
    new Uint8Array(data.buffer).set(buffer.subarray(entry.offset, end));
    tensors[entry.group][entry.name] = { shape: entry.shape, data };
  }

  const { format: _format, tensorsFile: _tensorsFile, tensors: _index, ...meta } = state;
  return { meta, tensors };
}
