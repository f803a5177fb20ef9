// Export of the CLIP image and text towers to ONNX models (opset 17), for runtimes such as
// onnxruntime-node that run gradient-free passes (zero-shot, frozen prefixes, similarity
// features) with native multi-threaded kernels. The image graph computes what vision.ts
// computes: patch embedding (Conv), class token, positions, ln_pre, residual blocks with
// QuickGELU or GELU, then the tokens after a given block, ln_post of the class token and proj,
// or one activation per vision unit for the similarity strategy. The text graph computes what
// text.ts computes (exportTextOnnx).
//
// The protobuf encoding is written here (ModelProto, GraphProto, NodeProto, TensorProto and
// ValueInfoProto of onnx/onnx.proto, IR version 8), so the export needs no dependency.
import type { ClipConfig } from './config.ts';
import type { CheckpointTensor } from './checkpoint.ts';

export interface VisionOnnxOptions {
  /** Number of residual blocks to run (default: all). */
  blocks?: number;
  /**
   * 'features' ends with ln_post and proj ([B, embedDim]). 'tokens' returns [B, T, width].
   * 'units' returns one output per vision unit, named by unit (see unitOutputNames).
   */
  output?: 'features' | 'tokens' | 'units';
}

/** Input name of the exported graph, and the output name unless the output is 'units'. */
export const ONNX_INPUT = 'pixels';
export const ONNX_OUTPUT = 'output';

/**
 * Output names and per-image shapes of a 'units' export: `vision.embed` is the mean patch
 * token after ln_pre [width], `vision.block.i` the class token after block i [width], and
 * `vision.head` the image features [embedDim] after the last exported block.
 */
export function unitOutputNames(config: ClipConfig, blocks = config.vision.layers): Array<{ name: string; shape: number[] }> {
  const { width } = config.vision;
  return [
    { name: 'vision.embed', shape: [width] },
    ...Array.from({ length: blocks }, (_, i) => ({ name: `vision.block.${i}`, shape: [width] })),
    { name: 'vision.head', shape: [config.embedDim] },
  ];
}

/**
 * Builds the ONNX model of the image tower from canonical weights (ClipModel.getWeights()).
 * Input `pixels` is float32 [batch, 3, imageSize, imageSize] with a dynamic batch.
 */
export function exportVisionOnnx(config: ClipConfig, weights: Map<string, CheckpointTensor>, options: VisionOnnxOptions = {}): Uint8Array {
  const { width, layers, heads, imageSize, patchSize } = config.vision;
  const blocks = options.blocks ?? layers;
  const output = options.output ?? 'features';
  if (!Number.isInteger(blocks) || blocks < 0 || blocks > layers) {
    throw new Error(`Invalid ONNX export block count ${blocks}: the model has ${layers} vision blocks.`);
  }
  const graph = new GraphBuilder(weights);

  // Patch embedding: a stride-p convolution without bias, then [B, width, g, g] -> [B, P, width].
  const patches = graph.op('Conv', [ONNX_INPUT, graph.weight('visual.conv1.weight')], { kernel_shape: [patchSize, patchSize], strides: [patchSize, patchSize] });
  const flat = graph.op('Reshape', [patches, graph.int64([0, width, -1])]);
  const patchTokens = graph.op('Transpose', [flat], { perm: [0, 2, 1] });

  // Class token expanded to [B, 1, width], prepended; then positions and ln_pre.
  const batch = graph.op('Slice', [graph.op('Shape', [ONNX_INPUT]), graph.int64([0]), graph.int64([1])]);
  const classShape = graph.op('Concat', [batch, graph.int64([1, width])], { axis: 0 });
  const classToken = graph.op('Expand', [graph.weight('visual.class_embedding', [1, 1, width]), classShape]);
  let x = graph.op('Concat', [classToken, patchTokens], { axis: 1 });
  x = graph.op('Add', [x, graph.weight('visual.positional_embedding')]);
  x = layerNorm(graph, x, 'visual.ln_pre', config.layerNormEps);
  const input: ValueInfo = [ONNX_INPUT, ['batch', 3, imageSize, imageSize]];

  // 'units': every unit's activation is a graph output, computed on the way up the tower.
  if (output === 'units') {
    const unitOutputs: string[] = [];
    const patchMean = graph.op('ReduceMean', [graph.op('Slice', [x, graph.int64([1]), graph.int64([Number.MAX_SAFE_INTEGER]), graph.int64([1])])], { axes: [1], keepdims: 0 });
    unitOutputs.push(patchMean);
    for (let i = 0; i < blocks; i++) {
      x = residualBlock(graph, x, `visual.transformer.resblocks.${i}.`, config, config.vision);
      unitOutputs.push(graph.op('Gather', [x, graph.int64Scalar(0)], { axis: 1 }));
    }
    unitOutputs.push(visionHead(graph, x, config));

    const names = unitOutputNames(config, blocks);
    names.forEach((unit, i) => graph.rename(unitOutputs[i], unit.name));
    return graph.encode(input, names.map((unit): ValueInfo => [unit.name, ['batch', ...unit.shape]]));
  }

  for (let i = 0; i < blocks; i++) x = residualBlock(graph, x, `visual.transformer.resblocks.${i}.`, config, config.vision);

  if (output === 'features') x = visionHead(graph, x, config);
  graph.rename(x, ONNX_OUTPUT);

  const outputShape: Array<number | string> = output === 'features' ? ['batch', config.embedDim] : ['batch', (imageSize / patchSize) ** 2 + 1, width];
  return graph.encode(input, [[ONNX_OUTPUT, outputShape]]);
}

/** Input name of the exported text tower: token ids int32 [batch, tokens]. */
export const ONNX_TEXT_INPUT = 'ids';

/**
 * Builds the ONNX model of the text tower: token ids int32 [batch, tokens] to text features
 * [batch, embedDim] (not normalised), pooled at the end-of-text token (the row's highest id,
 * the first one if repeated, as torch.argmax returns). `tokens` may be any length up to the
 * context length. The attention is causal, so the features of a row equal those of its full
 * zero-padded context when `tokens` covers the row's end-of-text token.
 */
export function exportTextOnnx(config: ClipConfig, weights: Map<string, CheckpointTensor>): Uint8Array {
  const { contextLength, layers } = config.text;
  const graph = new GraphBuilder(weights);

  // Token and position embeddings, with positions and the causal mask cut to the ids' length.
  const length = graph.op('Slice', [graph.op('Shape', [ONNX_TEXT_INPUT]), graph.int64([1]), graph.int64([2])]); // [1]
  const tokens = graph.op('Gather', [graph.weight('token_embedding.weight'), ONNX_TEXT_INPUT], { axis: 0 }); // [B, T, width]
  const positions = graph.op('Slice', [graph.weight('positional_embedding'), graph.int64([0]), length, graph.int64([0])]);
  let x = graph.op('Add', [tokens, positions]);
  const maskEnds = graph.op('Concat', [length, length], { axis: 0 });
  const mask = graph.op('Slice', [graph.floatConstant('causal_mask', [contextLength, contextLength], causalMaskValues(contextLength)), graph.int64([0, 0]), maskEnds, graph.int64([0, 1])]);

  for (let i = 0; i < layers; i++) x = residualBlock(graph, x, `transformer.resblocks.${i}.`, config, config.text, mask);

  // End-of-text token of each row [B, width], then ln_final and text_projection.
  const endOfText = graph.op('ArgMax', [ONNX_TEXT_INPUT], { axis: 1, keepdims: 1 }); // [B, 1]
  const pooled = graph.op('GatherND', [x, endOfText], { batch_dims: 1 });
  const normalised = layerNorm(graph, pooled, 'ln_final', config.layerNormEps);
  graph.rename(graph.op('MatMul', [normalised, graph.weight('text_projection')]), ONNX_OUTPUT);

  return graph.encode([ONNX_TEXT_INPUT, ['batch', 'tokens'], INT32], [[ONNX_OUTPUT, ['batch', config.embedDim]]]);
}

/** Additive causal mask [T, T]: -1e9 above the diagonal, as layers.causalMask builds it for TF.js. */
function causalMaskValues(length: number): Float32Array {
  const values = new Float32Array(length * length);
  for (let i = 0; i < length; i++) for (let j = i + 1; j < length; j++) values[i * length + j] = -1e9;
  return values;
}

/** ln_post of the class token, then proj: tokens [B, T, width] to image features [B, embedDim]. */
function visionHead(graph: GraphBuilder, x: string, config: ClipConfig): string {
  const classOut = graph.op('Gather', [x, graph.int64Scalar(0)], { axis: 1 }); // [B, width]
  const normalised = layerNorm(graph, classOut, 'visual.ln_post', config.layerNormEps);
  return graph.op('MatMul', [normalised, graph.weight('visual.proj')]);
}

function layerNorm(graph: GraphBuilder, x: string, prefix: string, eps: number): string {
  return graph.op('LayerNormalization', [x, graph.weight(`${prefix}.weight`), graph.weight(`${prefix}.bias`)], { axis: -1, epsilon: eps });
}

/** Linear layer on the last axis; PyTorch stores the weight as [out, in], so it is transposed here. */
function linear(graph: GraphBuilder, x: string, weightName: string, biasName: string): string {
  return graph.op('Add', [graph.op('MatMul', [x, graph.transposedWeight(weightName)]), graph.weight(biasName)]);
}

/**
 * Pre-LN residual block: x + attn(ln_1(x)), then x + mlp(ln_2(x)), on x [B, T, width] of the
 * tower `dims`. `mask` is an additive attention mask [T, T] (the text tower's causal mask).
 */
function residualBlock(graph: GraphBuilder, x: string, prefix: string, config: ClipConfig, dims: { width: number; heads: number }, mask?: string): string {
  const { width, heads } = dims;
  const headDim = width / heads;

  // Multi-head self-attention: q, k, v from one projection, split by heads.
  const attnIn = layerNorm(graph, x, `${prefix}ln_1`, config.layerNormEps);
  const qkv = linear(graph, attnIn, `${prefix}attn.in_proj_weight`, `${prefix}attn.in_proj_bias`); // [B, T, 3W]
  const split = graph.op('Transpose', [graph.op('Reshape', [qkv, graph.int64([0, 0, 3, heads, headDim])])], { perm: [2, 0, 3, 1, 4] }); // [3, B, H, T, d]
  const q = graph.op('Mul', [graph.op('Gather', [split, graph.int64Scalar(0)], { axis: 0 }), graph.float32Scalar(1 / Math.sqrt(headDim))]);
  const kTransposed = graph.op('Transpose', [graph.op('Gather', [split, graph.int64Scalar(1)], { axis: 0 })], { perm: [0, 1, 3, 2] });
  const v = graph.op('Gather', [split, graph.int64Scalar(2)], { axis: 0 });
  const scores = graph.op('MatMul', [q, kTransposed]); // [B, H, T, T]
  const probs = graph.op('Softmax', [mask ? graph.op('Add', [scores, mask]) : scores], { axis: -1 });
  const context = graph.op('Transpose', [graph.op('MatMul', [probs, v])], { perm: [0, 2, 1, 3] }); // [B, T, H, d]
  const merged = graph.op('Reshape', [context, graph.int64([0, 0, width])]);
  const afterAttn = graph.op('Add', [x, linear(graph, merged, `${prefix}attn.out_proj.weight`, `${prefix}attn.out_proj.bias`)]);

  // MLP with QuickGELU (x * sigmoid(1.702 x)) or exact GELU.
  const mlpIn = layerNorm(graph, afterAttn, `${prefix}ln_2`, config.layerNormEps);
  const hidden = linear(graph, mlpIn, `${prefix}mlp.c_fc.weight`, `${prefix}mlp.c_fc.bias`);
  const activated =
    config.activation === 'quick_gelu'
      ? graph.op('Mul', [hidden, graph.op('Sigmoid', [graph.op('Mul', [hidden, graph.float32Scalar(1.702)])])])
      : graph.op('Mul', [graph.op('Mul', [hidden, graph.float32Scalar(0.5)]), graph.op('Add', [graph.float32Scalar(1), graph.op('Erf', [graph.op('Mul', [hidden, graph.float32Scalar(Math.SQRT1_2)])])])]);
  const mlpOut = linear(graph, activated, `${prefix}mlp.c_proj.weight`, `${prefix}mlp.c_proj.bias`);
  return graph.op('Add', [afterAttn, mlpOut]);
}

type AttributeValue = number | number[];

/** TensorProto element types used in value infos. */
const FLOAT = 1;
const INT32 = 6;

/** A graph input or output: name, shape (a string for a dynamic dimension) and element type (default FLOAT). */
type ValueInfo = [string, Array<number | string>, number?];

interface Initializer {
  name: string;
  dims: number[];
  dataType: 1 | 7; // TensorProto.FLOAT, TensorProto.INT64
  raw: Uint8Array;
}

/** Collects nodes and initializers with generated unique names, then encodes the ModelProto. */
class GraphBuilder {
  private readonly initializers: Initializer[] = [];
  private readonly renames = new Map<string, string>();
  private pendingNodes: Array<{ op: string; inputs: string[]; output: string; attributes: Record<string, AttributeValue> }> = [];
  private counter = 0;

  constructor(private readonly weights: Map<string, CheckpointTensor>) {}

  op(type: string, inputs: string[], attributes: Record<string, AttributeValue> = {}): string {
    const output = `${type.toLowerCase()}_${this.counter++}`;
    this.pendingNodes.push({ op: type, inputs, output, attributes });
    return output;
  }

  /** Renames a node output (used for the graph output). */
  rename(from: string, to: string): void {
    this.renames.set(from, to);
  }

  weight(name: string, reshape?: number[]): string {
    const tensor = this.tensor(name);
    return this.addFloat(name, reshape ?? tensor.shape, tensor.data);
  }

  /** Adds a 2-D weight transposed from [out, in] to [in, out]. */
  transposedWeight(name: string): string {
    const tensor = this.tensor(name);
    const [rows, cols] = tensor.shape;
    const out = new Float32Array(rows * cols);
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = tensor.data[r * cols + c];
    return this.addFloat(`${name}.T`, [cols, rows], out);
  }

  /** Adds a float constant that is not a checkpoint weight. */
  floatConstant(name: string, dims: number[], data: Float32Array): string {
    return this.addFloat(name, dims, data);
  }

  float32Scalar(value: number): string {
    return this.addFloat(`const_${this.counter++}`, [], new Float32Array([value]));
  }

  int64(values: number[]): string {
    return this.addInt64(`const_${this.counter++}`, [values.length], values);
  }

  int64Scalar(value: number): string {
    return this.addInt64(`const_${this.counter++}`, [], [value]);
  }

  encode(input: ValueInfo, outputs: ValueInfo[]): Uint8Array {
    const graph = new ProtoWriter();
    for (const node of this.pendingNodes) {
      const n = new ProtoWriter();
      for (const i of node.inputs) n.string(1, this.renames.get(i) ?? i);
      n.string(2, this.renames.get(node.output) ?? node.output);
      n.string(3, node.output);
      n.string(4, node.op);
      for (const [name, value] of Object.entries(node.attributes)) n.message(5, encodeAttribute(name, value));
      graph.message(1, n);
    }
    graph.string(2, 'clip_vision');
    for (const init of this.initializers) {
      const t = new ProtoWriter();
      for (const d of init.dims) t.varint(1, d);
      t.varint(2, init.dataType);
      t.string(8, init.name);
      t.bytes(9, init.raw);
      graph.message(5, t);
    }
    graph.message(11, encodeValueInfo(input[0], input[1], input[2] ?? FLOAT));
    for (const [name, shape, elemType] of outputs) graph.message(12, encodeValueInfo(name, shape, elemType ?? FLOAT));

    const model = new ProtoWriter();
    model.varint(1, 8); // ir_version
    model.string(2, 'clipfreeze');
    model.message(7, graph);
    const opset = new ProtoWriter();
    opset.string(1, '');
    opset.varint(2, 17);
    model.message(8, opset);
    return model.finish();
  }

  private tensor(name: string): CheckpointTensor {
    const tensor = this.weights.get(name);
    if (!tensor) throw new Error(`Cannot export the image tower to ONNX: weight '${name}' is missing.`);
    return tensor;
  }

  private addFloat(name: string, dims: number[], data: Float32Array): string {
    const raw = new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
    this.initializers.push({ name, dims, dataType: 1, raw });
    return name;
  }

  private addInt64(name: string, dims: number[], values: number[]): string {
    const raw = new Uint8Array(values.length * 8);
    const view = new DataView(raw.buffer);
    values.forEach((v, i) => view.setBigInt64(i * 8, BigInt(v), true));
    this.initializers.push({ name, dims, dataType: 7, raw });
    return name;
  }
}

function encodeAttribute(name: string, value: AttributeValue): ProtoWriter {
  const a = new ProtoWriter();
  a.string(1, name);
  if (Array.isArray(value)) {
    for (const v of value) a.varint(8, v);
    a.varint(20, 7); // AttributeProto.INTS
  } else if (Number.isInteger(value) && name !== 'epsilon') {
    a.varint(3, value);
    a.varint(20, 2); // AttributeProto.INT
  } else {
    a.float(2, value);
    a.varint(20, 1); // AttributeProto.FLOAT
  }
  return a;
}

function encodeValueInfo(name: string, shape: Array<number | string>, elemType: number): ProtoWriter {
  const dims = new ProtoWriter();
  for (const d of shape) {
    const dim = new ProtoWriter();
    if (typeof d === 'number') dim.varint(1, d);
    else dim.string(2, d);
    dims.message(1, dim);
  }
  const tensorType = new ProtoWriter();
  tensorType.varint(1, elemType);
  tensorType.message(2, dims);
  const type = new ProtoWriter();
  type.message(1, tensorType);
  const info = new ProtoWriter();
  info.string(1, name);
  info.message(2, type);
  return info;
}

/** Minimal protobuf writer: varint, fixed32 float and length-delimited fields. */
class ProtoWriter {
  private readonly chunks: Uint8Array[] = [];
  private length = 0;

  varint(field: number, value: number): void {
    this.key(field, 0);
    this.rawVarint(BigInt.asUintN(64, BigInt(value)));
  }

  float(field: number, value: number): void {
    this.key(field, 5);
    const bytes = new Uint8Array(4);
    new DataView(bytes.buffer).setFloat32(0, value, true);
    this.push(bytes);
  }

  string(field: number, value: string): void {
    this.bytes(field, new TextEncoder().encode(value));
  }

  bytes(field: number, value: Uint8Array): void {
    this.key(field, 2);
    this.rawVarint(BigInt(value.length));
    this.push(value);
  }

  message(field: number, value: ProtoWriter): void {
    this.bytes(field, value.finish());
  }

  finish(): Uint8Array {
    const out = new Uint8Array(this.length);
    let offset = 0;
    for (const chunk of this.chunks) {
      out.set(chunk, offset);
      offset += chunk.length;
    }
    return out;
  }

  private key(field: number, wireType: number): void {
    this.rawVarint(BigInt((field << 3) | wireType));
  }

  private rawVarint(value: bigint): void {
    const bytes: number[] = [];
    let v = value;
    do {
      let byte = Number(v & 0x7fn);
      v >>= 7n;
      if (v > 0n) byte |= 0x80;
      bytes.push(byte);
    } while (v > 0n);
    this.push(Uint8Array.from(bytes));
  }

  private push(bytes: Uint8Array): void {
    this.chunks.push(bytes);
    this.length += bytes.length;
  }
}
