// CLIP's byte-level BPE tokenizer, a port of openai/CLIP `clip/simple_tokenizer.py`.
//
// Text is cleaned (HTML entities decoded twice, whitespace collapsed, trimmed), lower-cased,
// split by CLIP's regular expression, mapped byte by byte to printable unicode characters and
// merged by BPE rank. The vocabulary comes from Hugging Face files (vocab.json + merges.txt) or
// from OpenAI's bpe_simple_vocab_16e6.txt.gz, whose copy in lib/clip/assets/ is the fallback.
//
// NOTE: the reference also runs ftfy.fix_text (mojibake repair), which has no JavaScript port,
// so text with broken encodings may tokenize differently from the reference.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';
import { decodeHTML } from 'entities';

export const START_OF_TEXT = '<|startoftext|>';
export const END_OF_TEXT = '<|endoftext|>';
export const DEFAULT_CONTEXT_LENGTH = 77;

/** Number of merges CLIP uses from bpe_simple_vocab_16e6.txt.gz: 49152 - 256 - 2. */
const OPENAI_MERGE_COUNT = 49152 - 256 - 2;

const ASSET_VOCAB = path.join(path.dirname(fileURLToPath(import.meta.url)), 'assets', 'bpe_simple_vocab_16e6.txt.gz');

// The reference pattern with \p{L} letters and \p{N} digits. Digits are matched one at a
// time, so "23" becomes two tokens.
const TOKEN_PATTERN = /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+/giu;

/**
 * Maps every byte to a printable unicode character so that BPE input contains no whitespace or
 * control characters: printable Latin-1 bytes map to themselves, the rest to 256 + n.
 */
export function bytesToUnicode(): string[] {
  const printable: number[] = [];
  for (let b = '!'.charCodeAt(0); b <= '~'.charCodeAt(0); b++) printable.push(b);
  for (let b = '¡'.charCodeAt(0); b <= '¬'.charCodeAt(0); b++) printable.push(b);
  for (let b = '®'.charCodeAt(0); b <= 'ÿ'.charCodeAt(0); b++) printable.push(b);

  const table = new Array<string>(256);
  const isPrintable = new Set(printable);
  for (const b of printable) table[b] = String.fromCharCode(b);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!isPrintable.has(b)) {
      table[b] = String.fromCharCode(256 + n);
      n++;
    }
  }
  return table;
}

/** Byte values in the order the OpenAI vocabulary lists them (printable ones first). */
function bytesInVocabOrder(): number[] {
  const order: number[] = [];
  for (let b = '!'.charCodeAt(0); b <= '~'.charCodeAt(0); b++) order.push(b);
  for (let b = '¡'.charCodeAt(0); b <= '¬'.charCodeAt(0); b++) order.push(b);
  for (let b = '®'.charCodeAt(0); b <= 'ÿ'.charCodeAt(0); b++) order.push(b);
  const seen = new Set(order);
  for (let b = 0; b < 256; b++) if (!seen.has(b)) order.push(b);
  return order;
}

/** Cleans text as the reference does (without ftfy): HTML-unescape twice, collapse whitespace, trim. */
export function cleanText(text: string): string {
  const unescaped = decodeHTML(decodeHTML(text)).trim();
  return unescaped.replace(/\s+/gu, ' ').trim();
}

export class ClipTokenizer {
  readonly encoder: Map<string, number>;
  readonly decoder: Map<number, string>;
  readonly startToken: number;
  readonly endToken: number;
  /** The vocabulary file(s) this tokenizer was read from. */
  readonly source: string;

  private readonly bpeRanks: Map<string, number>;
  private readonly byteEncoder = bytesToUnicode();
  private readonly cache = new Map<string, string[]>();

  constructor(encoder: Map<string, number>, merges: Array<[string, string]>, source: string) {
    this.encoder = encoder;
    this.decoder = new Map([...encoder].map(([token, id]) => [id, token]));
    this.bpeRanks = new Map(merges.map(([a, b], rank) => [`${a} ${b}`, rank]));
    this.source = source;

    const start = encoder.get(START_OF_TEXT);
    const end = encoder.get(END_OF_TEXT);
    if (start === undefined || end === undefined) {
      throw new Error(`Invalid tokenizer vocabulary ${source}: it has no ${START_OF_TEXT} or ${END_OF_TEXT} token.`);
    }
    this.startToken = start;
    this.endToken = end;
    this.cache.set(START_OF_TEXT, [START_OF_TEXT]);
    this.cache.set(END_OF_TEXT, [END_OF_TEXT]);
  }

  /**
   * Reads the tokenizer of a checkpoint folder: vocab.json + merges.txt (Hugging Face),
   * else bpe_simple_vocab_16e6.txt.gz (OpenAI), else the copy shipped with clipfreeze.
   * `dir` may also be a vocabulary .gz file, or a checkpoint file whose folder is searched.
   */
  static fromDir(dir?: string): ClipTokenizer {
    if (dir !== undefined) {
      if (dir.endsWith('.gz') && fs.existsSync(dir)) return ClipTokenizer.fromOpenAIVocab(dir);
      const folder = fs.existsSync(dir) && fs.statSync(dir).isFile() ? path.dirname(dir) : dir;
      const vocabJson = path.join(folder, 'vocab.json');
      const mergesTxt = path.join(folder, 'merges.txt');
      if (fs.existsSync(vocabJson) && fs.existsSync(mergesTxt)) return ClipTokenizer.fromHuggingFace(vocabJson, mergesTxt);
      const gz = path.join(folder, 'bpe_simple_vocab_16e6.txt.gz');
      if (fs.existsSync(gz)) return ClipTokenizer.fromOpenAIVocab(gz);
    }
    return ClipTokenizer.fromOpenAIVocab(ASSET_VOCAB);
  }

  /** Reads OpenAI's gzipped merge list and builds the vocabulary the way simple_tokenizer.py does. */
  static fromOpenAIVocab(file: string): ClipTokenizer {
    let text: string;
    try {
      text = zlib.gunzipSync(fs.readFileSync(file)).toString('utf8');
    } catch (err) {
      throw new Error(`Failed to read the BPE vocabulary ${file}: ${(err as Error).message}. Use OpenAI's bpe_simple_vocab_16e6.txt.gz.`);
    }

    // Line 0 is a version header. The next 48894 lines are the merges CLIP uses.
    const lines = text.split('\n').slice(1, OPENAI_MERGE_COUNT + 1).filter((line) => line !== '');
    if (lines.length < OPENAI_MERGE_COUNT) {
      throw new Error(`Invalid BPE vocabulary ${file}: expected ${OPENAI_MERGE_COUNT} merges, found ${lines.length}.`);
    }
    const merges = lines.map((line, i) => parseMerge(line, file, i + 2));

    const byteChars = bytesToUnicode();
    const base = bytesInVocabOrder().map((b) => byteChars[b]);
    const vocab = [...base, ...base.map((c) => `${c}</w>`), ...merges.map(([a, b]) => a + b), START_OF_TEXT, END_OF_TEXT];
    const encoder = new Map(vocab.map((token, id) => [token, id]));
    return new ClipTokenizer(encoder, merges, file);
  }

  /** Reads a Hugging Face CLIPTokenizer's vocab.json (token to id) and merges.txt. */
  static fromHuggingFace(vocabFile: string, mergesFile: string): ClipTokenizer {
    let vocab: Record<string, number>;
    try {
      vocab = JSON.parse(fs.readFileSync(vocabFile, 'utf8')) as Record<string, number>;
    } catch (err) {
      throw new Error(`Failed to read the tokenizer vocabulary ${vocabFile}: ${(err as Error).message}`);
    }
    const lines = fs
      .readFileSync(mergesFile, 'utf8')
      .split('\n')
      .map((line, i) => ({ line: line.trim(), lineNumber: i + 1 }))
      .filter(({ line }) => line !== '' && !line.startsWith('#version'));
    const merges = lines.map(({ line, lineNumber }) => parseMerge(line, mergesFile, lineNumber));
    return new ClipTokenizer(new Map(Object.entries(vocab)), merges, `${vocabFile} + ${mergesFile}`);
  }

  get vocabSize(): number {
    return this.encoder.size;
  }

  /** Encodes text to BPE token ids, without start and end tokens. */
  encode(text: string): number[] {
    const cleaned = cleanText(text).toLowerCase();
    const ids: number[] = [];
    for (const match of cleaned.matchAll(TOKEN_PATTERN)) {
      const bytes = Buffer.from(match[0], 'utf8');
      let word = '';
      for (const b of bytes) word += this.byteEncoder[b];
      for (const piece of this.bpe(word)) {
        const id = this.encoder.get(piece);
        if (id === undefined) throw new Error(`BPE token '${piece}' of "${text}" is missing from the vocabulary ${this.source}.`);
        ids.push(id);
      }
    }
    return ids;
  }

  /** Decodes token ids back to text (start, end and padding tokens dropped). */
  decode(ids: ArrayLike<number>): string {
    const byteDecoder = new Map(this.byteEncoder.map((c, b) => [c, b]));
    const bytes: number[] = [];
    for (const id of Array.from(ids)) {
      if (id === this.startToken || id === this.endToken || id === 0) continue;
      const token = this.decoder.get(id);
      if (token === undefined) continue;
      for (const c of token.replace('</w>', ' ')) {
        const b = c === ' ' ? 32 : byteDecoder.get(c);
        if (b !== undefined) bytes.push(b);
      }
    }
    return Buffer.from(bytes).toString('utf8').trim();
  }

  /**
   * Tokenizes texts into a row-major int32 matrix [N, contextLength]: start token, BPE ids,
   * end token, zero padding. Longer texts are truncated with the end token kept last, as
   * clip.tokenize(..., truncate=True) does.
   */
  tokenize(texts: string[], contextLength = DEFAULT_CONTEXT_LENGTH): Int32Array {
    const out = new Int32Array(texts.length * contextLength);
    texts.forEach((text, row) => {
      let ids = [this.startToken, ...this.encode(text), this.endToken];
      if (ids.length > contextLength) {
        ids = ids.slice(0, contextLength);
        ids[contextLength - 1] = this.endToken;
      }
      out.set(ids, row * contextLength);
    });
    return out;
  }

  /** Splits one byte-encoded word into BPE pieces, the last one marked with </w>. */
  private bpe(token: string): string[] {
    const cached = this.cache.get(token);
    if (cached) return cached;

    const chars = Array.from(token);
    let word = [...chars.slice(0, -1), `${chars[chars.length - 1]}</w>`];
    while (word.length > 1) {
      // Find the adjacent pair with the lowest merge rank.
      let best: string | null = null;
      let bestRank = Infinity;
      for (let i = 0; i < word.length - 1; i++) {
        const rank = this.bpeRanks.get(`${word[i]} ${word[i + 1]}`);
        if (rank !== undefined && rank < bestRank) {
          bestRank = rank;
          best = `${word[i]} ${word[i + 1]}`;
        }
      }
      if (best === null) break;

      // Merge every occurrence of that pair, left to right.
      const [first, second] = best.split(' ');
      const merged: string[] = [];
      let i = 0;
      while (i < word.length) {
        if (i < word.length - 1 && word[i] === first && word[i + 1] === second) {
          merged.push(first + second);
          i += 2;
        } else {
          merged.push(word[i]);
          i += 1;
        }
      }
      word = merged;
    }

    this.cache.set(token, word);
    return word;
  }
}

function parseMerge(line: string, file: string, lineNumber: number): [string, string] {
  const parts = line.split(' ');
  if (parts.length !== 2 || !parts[0] || !parts[1]) {
    throw new Error(`Invalid BPE merge on line ${lineNumber} of ${file}: '${line}'. Each line must be two tokens separated by one space.`);
  }
  return [parts[0], parts[1]];
}
