/**
 * splitmix64 (qcrash-io's generator) in a few WebAssembly instructions:
 * JavaScript has no 64-bit integer multiply short of BigInt, and the 32-bit
 * halves form cost about 120 ns a word, so making the tens of thousands of
 * rewriter sectors a write-log run checks was most of its history checks.
 * WebAssembly's i64.mul does a word in a few ns. The module is assembled
 * here from the instruction list below (no toolchain, nothing committed that
 * is not readable); test/checks/generated-bytes.test.ts holds its bytes to
 * the BigInt reference.
 */

/** Signed LEB128 of a 64-bit value (i64.const's immediate). */
function sleb(v: bigint): number[] {
  const out: number[] = [];
  let x = BigInt.asIntN(64, v);
  for (;;) {
    const byte = Number(x & 0x7fn);
    x >>= 7n;
    if ((x === 0n && !(byte & 0x40)) || (x === -1n && byte & 0x40)) return [...out, byte];
    out.push(byte | 0x80);
  }
}

/** Unsigned LEB128 (section and body lengths). */
function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    const byte = n & 0x7f;
    n >>>= 7;
    out.push(n ? byte | 0x80 : byte);
  } while (n);
  return out;
}

function section(id: number, bytes: number[]): number[] {
  return [id, ...uleb(bytes.length), ...bytes];
}

const I64 = 0x7e;
const I32 = 0x7f;
const op = {
  block: 0x02,
  loop: 0x03,
  end: 0x0b,
  br: 0x0c,
  brIf: 0x0d,
  get: 0x20,
  set: 0x21,
  i64Store: 0x37,
  i32Const: 0x41,
  i64Const: 0x42,
  i32Eqz: 0x45,
  i32Add: 0x6a,
  i32Sub: 0x6b,
  i64Add: 0x7c,
  i64Mul: 0x7e,
  i64Xor: 0x85,
  i64ShrU: 0x88,
};

// fill(s: i64, ptr: i32, n: i32): n words of splitmix64 from state s, stored little-endian from ptr.
// Locals: 0 s, 1 ptr, 2 n, 3 z.
const S = 0;
const PTR = 1;
const N = 2;
const Z = 3;
/** z = (z ^ (z >> k)), then times m when given. */
// prettier-ignore
const mixStep = (k: number, m?: bigint) => [
  op.get, Z, op.get, Z, op.i64Const, k, op.i64ShrU, op.i64Xor,
  ...(m === undefined ? [] : [op.i64Const, ...sleb(m), op.i64Mul]),
];
// prettier-ignore
const body = [
  1, 1, I64, // one local: z
  op.block, 0x40,
  op.loop, 0x40,
  op.get, N, op.i32Eqz, op.brIf, 1, // n == 0: done
  op.get, S, op.i64Const, ...sleb(0x9e3779b97f4a7c15n), op.i64Add, op.set, S, // s += GAMMA
  op.get, S, op.set, Z, // z = s
  ...mixStep(30, 0xbf58476d1ce4e5b9n), op.set, Z,
  ...mixStep(27, 0x94d049bb133111ebn), op.set, Z,
  op.get, PTR, ...mixStep(31), op.i64Store, 3, 0, // *(u64 *)ptr = z ^ (z >> 31)
  op.get, PTR, op.i32Const, 8, op.i32Add, op.set, PTR,
  op.get, N, op.i32Const, 1, op.i32Sub, op.set, N,
  op.br, 0,
  op.end,
  op.end,
  op.end,
];
// prettier-ignore
const moduleBytes = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  ...section(1, [1, 0x60, 3, I64, I32, I32, 0]), // type 0: (i64, i32, i32) -> ()
  ...section(3, [1, 0]), // function 0 has type 0
  ...section(5, [1, 0, 1]), // one memory, 1 page at first, growable
  ...section(7, [2, 4, ...Buffer.from('fill'), 0, 0, 3, ...Buffer.from('mem'), 2, 0]),
  ...section(10, [1, ...uleb(body.length), ...body]),
]);

/** The part of the WebAssembly global used here (this project's TypeScript libs do not declare it). */
interface Wasm {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: Record<string, unknown> };
}
const { WebAssembly: wasm } = globalThis as unknown as { WebAssembly: Wasm };
const instance = new wasm.Instance(new wasm.Module(moduleBytes));
const fill = instance.exports.fill as (s: bigint, ptr: number, n: number) => void;
const memory = instance.exports.mem as { buffer: ArrayBuffer; grow(pages: number): number };

/** The generator's words for `size` bytes, made in the module's memory: a view of them, valid until the next call. */
function generate(seed: bigint, size: number): Uint8Array {
  const words = Math.ceil(size / 8);
  const need = words * 8 - memory.buffer.byteLength;
  if (need > 0) memory.grow(Math.ceil(need / 65536));
  fill(BigInt.asIntN(64, seed), 0, words);
  return new Uint8Array(memory.buffer, 0, size);
}

/** `size` bytes of splitmix64 from state `seed` (a 64-bit value), little-endian words, the last one cut short. */
export function splitmixBytes(seed: bigint, size: number): Buffer {
  return Buffer.from(generate(seed, size));
}

/** splitmixBytes(seed, size) written into `target` at `offset`, with no buffer of its own (a rewriter sector's body). */
export function splitmixInto(seed: bigint, target: Uint8Array, offset: number, size: number): void {
  target.set(generate(seed, size), offset);
}

/** The generator's first word from state `seed`: splitmixBytes(seed, 8) as an unsigned 64-bit value. */
export function splitmixWord(seed: bigint): bigint {
  generate(seed, 8);
  return new BigUint64Array(memory.buffer, 0, 1)[0]!;
}
