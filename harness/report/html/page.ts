import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { styleSheet } from './style.ts';
import { verdictStyles } from './verdict.ts';

/**
 * The shell every qcrash page shares: one self-contained HTML file (styles,
 * data and scripts inlined, nothing fetched), tables rendered on the host so
 * they read without JavaScript, and charts drawn in the browser by
 * Observable Plot from the page's embedded JSON.
 */

export function esc(v: unknown): string {
  return String(v ?? '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

/** An href to a file below the page's folder: each path segment percent-encoded, "/" kept. */
export function relHref(relPath: string): string {
  return relPath.split(/[\\/]/).map(encodeURIComponent).join('/');
}

/** Text that goes inside <script>: nothing in it may close the element or open a comment. */
export function scriptSafe(code: string): string {
  return code.replace(/<\/(script)/gi, '<\\/$1').replace(/<!--/g, '<\\!--');
}

/** JSON for a `<script type="application/json">` block; `<` escaped so no string can end the element. */
export function jsonForScript(value: unknown): string {
  return JSON.stringify(value)
    .replace(/</g, '\\u003c')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}

const require = createRequire(import.meta.url);
let libraries: Promise<string> | undefined;

/** A file of an installed package, found from its resolvable entry (the packages export no ./dist paths). */
async function packageFile(pkg: string, file: string): Promise<string> {
  let dir = dirname(require.resolve(pkg));
  for (;;) {
    const manifest = await readFile(join(dir, 'package.json'), 'utf8').catch(() => undefined);
    if (manifest && (JSON.parse(manifest) as { name?: string }).name === pkg) return readFile(join(dir, file), 'utf8');
    const up = dirname(dir);
    if (up === dir) throw new Error(`cannot find the package folder of ${pkg} (run npm ci)`);
    dir = up;
  }
}

/**
 * d3 and Observable Plot's UMD builds, read from node_modules: the Plot
 * bundle expects a global `d3`, so d3 comes first. Read once per process.
 */
export function chartLibraries(): Promise<string> {
  libraries ??= (async () => {
    const d3 = await packageFile('d3', 'dist/d3.min.js');
    const plot = await packageFile('@observablehq/plot', 'dist/plot.umd.min.js');
    return `${scriptSafe(d3)}\n;\n${scriptSafe(plot)}`;
  })();
  return libraries;
}

const clientScripts = new Map<string, Promise<string>>();

/** A browser-side script shipped beside this module (client/NAME.js), inlined into the page. */
export function clientScript(name: string): Promise<string> {
  let p = clientScripts.get(name);
  if (!p) {
    p = readFile(new URL(`./client/${name}.js`, import.meta.url), 'utf8').then(scriptSafe);
    clientScripts.set(name, p);
  }
  return p;
}

export interface PageParts {
  title: string;
  /** The body's HTML (already escaped where it holds data). */
  body: string;
  /** Embedded as `<script type="application/json" id="qcrash-data">`, with the verdict styles the charts use. */
  data?: unknown;
  /** Names of client scripts (client/NAME.js) to run after the chart libraries. */
  scripts?: string[];
  /** Whether the page draws charts (inlines d3 + Plot). */
  charts?: boolean;
}

export async function renderPage(p: PageParts): Promise<string> {
  const scripts: string[] = [];
  if (p.charts) scripts.push(await chartLibraries());
  for (const s of p.scripts ?? []) scripts.push(await clientScript(s));
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="qcrash">
<title>${esc(p.title)}</title>
<style>${styleSheet}</style>
</head>
<body>
${p.body}
<script type="application/json" id="qcrash-data">${jsonForScript({ verdicts: verdictStyles, ...(p.data as object | undefined) })}</script>
${scripts.map((s) => `<script>${s}</script>`).join('\n')}
</body>
</html>
`;
}
