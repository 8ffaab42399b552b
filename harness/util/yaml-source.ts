import { LineCounter, parseDocument, isMap, isSeq, isScalar, visit, type Document, type Node } from 'yaml';
import { ConfigError } from './errors.ts';

/** The yaml package's default: a scenario repeats a block a handful of times, a bomb a billion. */
const maxAliasCount = 100;

/**
 * A parsed YAML file that remembers where every value came from, so that a
 * validation error can name file:line. YAML syntax errors are raised here.
 */
export class YamlSource {
  private constructor(
    readonly file: string,
    readonly doc: Document.Parsed,
    private readonly lines: LineCounter,
  ) {}

  static parse(file: string, text: string): YamlSource {
    const lines = new LineCounter();
    const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
    const err = doc.errors[0];
    if (err) {
      const pos = lines.linePos(err.pos[0]);
      const firstLine = err.message.split('\n')[0] ?? err.message;
      throw new ConfigError(`YAML syntax error: ${firstLine}`, { file, line: pos.line, column: pos.col });
    }
    return new YamlSource(file, doc, lines);
  }

  /** The document as plain values; aliases expanded at most `maxAliasCount` times (an alias bomb is a ConfigError at its first alias). */
  value(): unknown {
    try {
      return this.doc.toJS({ maxAliasCount });
    } catch (e) {
      if (!(e instanceof ReferenceError) || !/alias/i.test(e.message)) throw e;
      const line = this.firstAliasLine();
      throw new ConfigError(
        `YAML aliases expand too far (more than ${maxAliasCount} copies of an anchor): write the values out, or use fewer aliases`,
        { file: this.file, ...(line !== undefined ? { line } : {}) },
      );
    }
  }

  private firstAliasLine(): number | undefined {
    let line: number | undefined;
    visit(this.doc, {
      Alias: (_key, node) => {
        if (node.range) line = this.lines.linePos(node.range[0]).line;
        return visit.BREAK;
      },
    });
    return line;
  }

  /** The line of the node at `path` (or of its nearest existing parent). */
  lineOf(path: ReadonlyArray<string | number>): number | undefined {
    for (let n = path.length; n >= 0; n--) {
      const node = this.doc.getIn(path.slice(0, n), true) as Node | undefined;
      if (node && typeof node === 'object' && 'range' in node && node.range) {
        return this.lines.linePos(node.range[0]).line;
      }
      // For a map key path, the pair's key holds the position even when the value is null.
      if (n > 0) {
        const parent = this.doc.getIn(path.slice(0, n - 1), true) as Node | undefined;
        const key = path[n - 1];
        if (parent && isMap(parent)) {
          const pair = parent.items.find((p) => isScalar(p.key) && p.key.value === key);
          if (pair && isScalar(pair.key) && pair.key.range) return this.lines.linePos(pair.key.range[0]).line;
        }
        if (parent && isSeq(parent) && typeof key === 'number') {
          const item = parent.items[key] as Node | undefined;
          if (item && 'range' in item && item.range) return this.lines.linePos(item.range[0]).line;
        }
      }
    }
    return undefined;
  }

  error(path: ReadonlyArray<string | number>, message: string): ConfigError {
    const line = this.lineOf(path);
    return new ConfigError(message, { file: this.file, ...(line !== undefined ? { line } : {}) });
  }
}
