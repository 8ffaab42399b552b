/**
 * YAML that Perl's TAP::Parser::YAMLish::Reader (what `prove` and
 * Test::Harness use) reads as well as any real YAML parser. That reader is a
 * small subset of YAML: no block scalars with chomping indicators (`|-`), no
 * multi-line quoted strings, no `\0` or `\u` escapes, and keys that start
 * with a word character. So: every string is double-quoted on one line with
 * only the escapes both sides know, numbers and booleans are plain, keys must
 * be plain words, nesting is block style with two spaces.
 */
export type YamlishValue = string | number | boolean | null | undefined | YamlishValue[] | { [key: string]: YamlishValue };

const escapes: Record<string, string> = {
  '\\': '\\\\',
  '"': '\\"',
  '\n': '\\n',
  '\t': '\\t',
  '\r': '\\r',
  '\x1b': '\\e',
  '\x07': '\\a',
  '\f': '\\f',
  '\v': '\\v',
};

export function yamlishString(s: string): string {
  return `"${s.replace(/[\\"\u0000-\u001f\u007f]/g, (c) => escapes[c] ?? `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)}"`;
}

function scalar(v: YamlishValue): string | undefined {
  if (v === null || v === undefined) return '~';
  if (typeof v === 'string') return yamlishString(v);
  if (typeof v === 'number') return Number.isFinite(v) ? String(v) : yamlishString(String(v));
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (Array.isArray(v)) return v.length ? undefined : '[]';
  return Object.keys(v).length ? undefined : '{}';
}

function checkKey(k: string): string {
  if (!/^\w[\w.-]*$/.test(k)) throw new Error(`YAMLish key must be a plain word, got ${JSON.stringify(k)}`);
  return k;
}

/** Lines of a mapping at `pad`; the first line may carry a prefix ("- " of an array item). */
function mappingLines(obj: { [key: string]: YamlishValue }, pad: string, firstPrefix = pad): string[] {
  const out: string[] = [];
  let first = true;
  for (const [k, v] of Object.entries(obj)) {
    if (v === undefined) continue;
    const lead = first ? firstPrefix : pad;
    first = false;
    const s = scalar(v);
    if (s !== undefined) out.push(`${lead}${checkKey(k)}: ${s}`);
    else {
      out.push(`${lead}${checkKey(k)}:`);
      out.push(...valueLines(v, `${pad}  `));
    }
  }
  return out;
}

function valueLines(v: YamlishValue, pad: string): string[] {
  if (Array.isArray(v)) {
    const out: string[] = [];
    for (const item of v) {
      const s = scalar(item);
      if (s !== undefined) out.push(`${pad}- ${s}`);
      else if (Array.isArray(item)) out.push(`${pad}-`, ...valueLines(item, `${pad}  `));
      else out.push(...mappingLines(item as { [key: string]: YamlishValue }, `${pad}  `, `${pad}- `));
    }
    return out;
  }
  return mappingLines(v as { [key: string]: YamlishValue }, pad);
}

/** A `---` ... `...` block for one TAP test line, indented by `indent` spaces (TAP 13 wants it under the test line). */
export function yamlishBlock(doc: { [key: string]: YamlishValue }, indent = 2): string[] {
  const pad = ' '.repeat(indent);
  return [`${pad}---`, ...valueLines(doc, pad), `${pad}...`];
}
