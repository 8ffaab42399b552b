import { GdbProtocolError } from './gdb-errors.ts';

export interface RegisterInfo {
  name: string;
  regnum: number;
  bitsize: number;
  /** Byte offset in the `g` reply; undefined past the registers `g` carries. */
  offset: number;
}

/**
 * Which register is where. Read from the stub's target description
 * (qXfer:features:read:target.xml and its includes) when it offers one;
 * QEMU also only answers `p` after that description was read. The fallback
 * is QEMU's x86_64 core layout (i386-64bit.xml), checked against the real
 * description in test/gdb/qemu-gdbstub.test.ts.
 */
export class RegisterLayout {
  private readonly byName = new Map<string, RegisterInfo>();
  /** Registers in `g` order. */
  readonly registers: readonly RegisterInfo[];

  constructor(
    regs: ReadonlyArray<{ name: string; regnum: number; bitsize: number }>,
    readonly source: 'target-xml' | 'builtin-x86_64',
  ) {
    let offset = 0;
    this.registers = [...regs]
      .sort((a, b) => a.regnum - b.regnum)
      .map((r) => {
        const info = { ...r, offset };
        offset += r.bitsize / 8;
        return info;
      });
    for (const r of this.registers) this.byName.set(r.name, r);
  }

  get(name: string): RegisterInfo {
    const r = this.byName.get(name);
    if (!r) throw new GdbProtocolError(`the target has no register "${name}" (layout from ${this.source})`);
    return r;
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  /** Registers of a `g` reply, little-endian as x86 stores them; those the reply does not cover are absent. */
  decodeG(hex: string): Map<string, bigint> {
    const bytes = Buffer.from(hex, 'hex');
    const out = new Map<string, bigint>();
    for (const r of this.registers) {
      const len = r.bitsize / 8;
      if (r.offset + len > bytes.length) break;
      if (len > 8) continue; // x87/SSE registers: never needed here
      out.set(r.name, readLe(bytes.subarray(r.offset, r.offset + len)));
    }
    return out;
  }

  static x86_64(): RegisterLayout {
    const names: Array<[string, number]> = [
      ...['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rbp', 'rsp', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15', 'rip'].map((n) => [n, 64] as [string, number]),
      ['eflags', 32],
      ...['cs', 'ss', 'ds', 'es', 'fs', 'gs'].map((n) => [n, 32] as [string, number]),
      ...['fs_base', 'gs_base', 'k_gs_base', 'cr0', 'cr2', 'cr3', 'cr4', 'cr8', 'efer'].map((n) => [n, 64] as [string, number]),
      ...Array.from({ length: 8 }, (_, i) => [`st${i}`, 80] as [string, number]),
      ...['fctrl', 'fstat', 'ftag', 'fiseg', 'fioff', 'foseg', 'fooff', 'fop'].map((n) => [n, 32] as [string, number]),
      ...Array.from({ length: 16 }, (_, i) => [`xmm${i}`, 128] as [string, number]),
      ['mxcsr', 32],
    ];
    return new RegisterLayout(names.map(([name, bitsize], regnum) => ({ name, regnum, bitsize })), 'builtin-x86_64');
  }

  /**
   * Build from target description documents (file name to XML). Registers
   * are numbered in document order unless a `regnum` attribute says
   * otherwise, following `<xi:include>` from target.xml.
   */
  static fromTargetXml(docs: ReadonlyMap<string, string>, root = 'target.xml'): RegisterLayout {
    const regs: Array<{ name: string; regnum: number; bitsize: number }> = [];
    let next = 0;
    const seen = new Set<string>();
    const walk = (file: string) => {
      if (seen.has(file)) return;
      seen.add(file);
      const doc = docs.get(file);
      if (doc === undefined) throw new GdbProtocolError(`target description "${file}" was not fetched`);
      // QEMU's i386-64bit.xml comments out cs_base..es_base: they must not count.
      const xml = doc.replace(/<!--[\s\S]*?-->/g, '');
      for (const m of xml.matchAll(/<xi:include\s+href="([^"]+)"\s*\/>|<reg\s([^>]*?)\/?>/g)) {
        if (m[1]) {
          walk(m[1]);
          continue;
        }
        const attrs = new Map([...m[2]!.matchAll(/(\w+)="([^"]*)"/g)].map((a) => [a[1]!, a[2]!]));
        const name = attrs.get('name');
        const bitsize = Number(attrs.get('bitsize'));
        if (!name || !Number.isInteger(bitsize)) continue;
        const regnum = attrs.has('regnum') ? Number(attrs.get('regnum')) : next;
        next = regnum + 1;
        regs.push({ name, regnum, bitsize });
      }
    };
    walk(root);
    if (!regs.length) throw new GdbProtocolError('target description lists no registers');
    return new RegisterLayout(regs, 'target-xml');
  }

  /** xi:include targets of one document, to fetch before fromTargetXml. */
  static includes(xml: string): string[] {
    return [...xml.replace(/<!--[\s\S]*?-->/g, '').matchAll(/<xi:include\s+href="([^"]+)"/g)].map((m) => m[1]!);
  }
}

export function readLe(bytes: Uint8Array): bigint {
  let v = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i]!);
  return v;
}

export function hexLe(hex: string): bigint {
  return readLe(Buffer.from(hex, 'hex'));
}
