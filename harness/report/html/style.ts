import { verdictStyles } from './verdict.ts';

const verdictRules = Object.entries(verdictStyles)
  .map(([k, v]) => `.v-${k}{--v:${v.color}}`)
  .join('\n');

/**
 * One stylesheet for every page. Tables scroll sideways inside their own
 * box, so a narrow window never scrolls the whole page; verdict cells carry
 * a left border in the verdict's colour and the symbol + word as text.
 */
export const styleSheet = `
:root{color-scheme:light;--fg:#1b1b1b;--muted:#5f6368;--line:#d0d7de;--bg-alt:#f6f8fa;--link:#0b57d0}
*{box-sizing:border-box}
[hidden]{display:none !important}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:var(--fg);margin:0 auto;padding:0 1rem 3rem;max-width:78rem}
header.page{border-bottom:1px solid var(--line);margin-bottom:1rem}
h1{font-size:1.45rem;margin:1rem 0 .25rem;overflow-wrap:anywhere}
h2{font-size:1.2rem;margin:2rem 0 .5rem;border-bottom:1px solid var(--line);padding-bottom:.2rem}
h3{font-size:1.05rem;margin:1.2rem 0 .4rem;overflow-wrap:anywhere}
a{color:var(--link)}
code,pre,.mono{font-family:"DejaVu Sans Mono",ui-monospace,Menlo,Consolas,monospace;font-size:.88em}
pre{background:var(--bg-alt);padding:.5rem .75rem;overflow-x:auto;white-space:pre-wrap;overflow-wrap:anywhere;border-radius:4px}
nav.toc{display:flex;flex-wrap:wrap;gap:.25rem 1rem;font-size:.95rem}
.muted{color:var(--muted)}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;margin:.25rem 0 1rem;font-size:.92rem}
th,td{border:1px solid var(--line);padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:var(--bg-alt);font-weight:600}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.15rem 1rem;margin:.5rem 0}
dl.facts dt{font-weight:600}
dl.facts dd{margin:0;overflow-wrap:anywhere}
.banner{display:inline-block;font-weight:700;padding:.2rem .6rem;border-radius:4px;border:2px solid var(--v);color:var(--v);margin:.25rem 0}
.verdict{display:inline-flex;align-items:center;gap:.25rem;border-left:.35rem solid var(--v);padding:0 .35rem;background:color-mix(in srgb,var(--v) 10%,white);white-space:nowrap;text-decoration:none;color:var(--fg);border-radius:2px;margin:1px 2px 1px 0}
a.verdict:hover,a.verdict:focus{outline:2px solid var(--v)}
.verdict .sym{color:var(--v);font-weight:700}
${verdictRules}
.allowed{opacity:.85}
section.allowed-findings{border-left:4px solid var(--line);padding-left:.75rem;background:var(--bg-alt)}
form.filters{display:flex;flex-wrap:wrap;gap:.5rem 1.25rem;align-items:center;margin:.5rem 0;padding:.5rem;background:var(--bg-alt);border-radius:4px}
form.filters fieldset{border:0;padding:0;margin:0;display:flex;flex-wrap:wrap;gap:.25rem .75rem}
form.filters legend{font-weight:600;padding:0;margin-right:.5rem;float:left}
figure.chart{margin:1rem 0}
figure.chart figcaption{color:var(--muted);font-size:.9rem}
figure.chart .plot-host{min-height:2rem;overflow-x:auto}
figure.chart .chart-error{color:${verdictStyles.fail.color}}
details.case{border:1px solid var(--line);border-radius:4px;margin:.5rem 0;padding:.25rem .75rem}
details.case[open]{padding-bottom:.75rem}
details.case>summary{cursor:pointer;padding:.25rem 0}
details.data>summary{cursor:pointer;color:var(--muted)}
ul.artefacts{columns:2 18rem;margin:.25rem 0;padding-left:1.2rem}
.tested-by{font-weight:600;border:2px solid ${verdictStyles.pass.color};padding:.4rem .6rem;border-radius:4px;display:inline-block}
.side-by-side{display:grid;grid-template-columns:repeat(auto-fit,minmax(18rem,1fr));gap:1rem}
.side-by-side>section{border:1px solid var(--line);border-radius:4px;padding:0 .75rem .5rem}
@media (max-width:40rem){body{padding:0 .5rem 2rem;font-size:14px}dl.facts{grid-template-columns:1fr}dl.facts dt{margin-top:.3rem}}
`;
