import { readFile } from 'node:fs/promises';
import { ConfigError } from '../../util/errors.ts';
import { closeMatches } from '../../util/suggest.ts';

/** Where a kill point's function is: its own symbol, or the one clone of it the compiler left ("free_dind_blocks.constprop.0"). */
export interface ResolvedSymbol {
  name: string;
  addr: bigint;
  /** Set when `name` is a compiler clone of the function asked for. */
  clone?: string;
}

/** The function a compiler clone was made from: "f.constprop.0", "f.isra.3", "f.part.1", "f.cold" and chains of them are clones of "f". */
export function cloneBase(symbol: string): string | undefined {
  const m = /^(.+?)((?:\.(?:constprop|isra|part|cold|lto_priv)(?:\.\d+)?)+)$/.exec(symbol);
  return m ? m[1] : undefined;
}

/**
 * Kernel symbols from System.map or /proc/kallsyms text. Only text symbols
 * (t/T) are breakpoint targets. A function the compiler cloned (constant
 * propagation, scalar replacement, a split-off part) is found under its
 * clone's name; one it inlined everywhere has no symbol at all: resolving
 * it fails with close matches.
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
    return this.lookup(name, where).addr;
  }

  /**
   * A function's symbol, or its clone's: the entry of the function when it
   * has one, else its one hot clone (the `.cold` part is not the entry: it is
   * taken only when it is the only clone). Several hot clones (two
   * constprop specialisations) are ambiguous: named, with the clones.
   */
  lookup(name: string, where?: { file?: string; line?: number }): ResolvedSymbol {
    const a = this.addrs.get(name);
    if (a !== undefined) return { name, addr: a };
    const clones = this.clonesOf(name);
    const hot = clones.filter((c) => !/\.cold(\.\d+)?$/.test(c));
    const pick = hot.length ? hot : clones;
    if (pick.length === 1) return { name: pick[0]!, addr: this.addrs.get(pick[0]!)!, clone: pick[0]! };
    if (pick.length > 1) {
      throw new ConfigError(
        `kernel symbol "${name}" has ${pick.length} compiler clones (${pick.join(', ')}) and no symbol of its own: name the clone to stop in`,
        where,
      );
    }
    throw new ConfigError(this.missingMessage(name), where);
  }

  /** Every clone of a function in this table ("f.constprop.0", "f.isra.1"...), sorted. */
  clonesOf(name: string): string[] {
    return [...this.addrs.keys()].filter((k) => k.startsWith(`${name}.`) && cloneBase(k) === name).sort();
  }

  /** Close matches of a symbol this table lacks (for "not judged" notes). */
  closeMatches(name: string): string[] {
    return closeMatches(name, this.addrs.keys(), 6);
  }

  private missingMessage(name: string): string {
    const m = this.closeMatches(name);
    return `unknown kernel symbol "${name}" (not in the kernel's symbol table: misspelt, or a static function the compiler inlined).${m.length ? ` Close matches: ${m.join(', ')}` : ''}`;
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
