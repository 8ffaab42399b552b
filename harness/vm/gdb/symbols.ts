import { readFile } from 'node:fs/promises';
import { ConfigError } from '../../util/errors.ts';
import { closeMatches } from '../../util/suggest.ts';

/**
 * Kernel symbols from System.map or /proc/kallsyms text. Only text symbols
 * (t/T) are breakpoint targets. Static functions the compiler inlined have
 * no symbol at all: resolving them fails up front with close matches.
 */
export class SymbolTable {
  private constructor(
    private readonly addrs: Map<string, bigint>,
    private readonly sorted: Array<[bigint, string]>,
  ) {}

  static parse(text: string): SymbolTable {
    const addrs = new Map<string, bigint>();
    for (const line of text.split('\n')) {
      const m = /^([0-9a-fA-F]+)\s+([tTwW])\s+(\S+)/.exec(line);
      if (!m) continue;
      const name = m[3]!;
      if (!addrs.has(name)) addrs.set(name, BigInt(`0x${m[1]}`));
    }
    const sorted = [...addrs.entries()]
      .map(([n, a]) => [a, n] as [bigint, string])
      .sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
    return new SymbolTable(addrs, sorted);
  }

  static async load(path: string): Promise<SymbolTable> {
    return SymbolTable.parse(await readFile(path, 'utf8'));
  }

  get size(): number {
    return this.addrs.size;
  }

  has(name: string): boolean {
    return this.addrs.has(name);
  }

  resolve(name: string, where?: { file?: string; line?: number }): bigint {
    const a = this.addrs.get(name);
    if (a !== undefined) return a;
    const m = closeMatches(name, this.addrs.keys(), 6);
    throw new ConfigError(
      `unknown kernel symbol "${name}" (not in the kernel's symbol table: misspelt, or a static function the compiler inlined).${m.length ? ` Close matches: ${m.join(', ')}` : ''}`,
      where,
    );
  }

  /** The address of the first symbol after `addr` (where a function at `addr` ends, at the latest). */
  nextAfter(addr: bigint): bigint | undefined {
    let lo = 0;
    let hi = this.sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.sorted[mid]![0] <= addr) lo = mid + 1;
      else hi = mid;
    }
    return this.sorted[lo]?.[0];
  }

  /** The symbol containing an address, as "name+0xoff". */
  symbolize(addr: bigint): string {
    let lo = 0;
    let hi = this.sorted.length - 1;
    let best = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.sorted[mid]![0] <= addr) {
        best = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    if (best < 0) return `0x${addr.toString(16)}`;
    const [a, n] = this.sorted[best]!;
    return addr === a ? n : `${n}+0x${(addr - a).toString(16)}`;
  }
}
