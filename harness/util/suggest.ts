/** Close matches for an unknown name, for "did you mean" messages. */
function editDistance(a: string, b: string): number {
  const prev = new Array<number>(b.length + 1);
  for (let j = 0; j <= b.length; j++) prev[j] = j;
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j]!;
      prev[j] = Math.min(up + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length]!;
}

/**
 * Up to `max` candidates ranked by edit distance, plus any candidate that
 * contains the name (or is contained in it): `ext4_migrate` should find
 * `ext4_ext_migrate` even though the distance is 4.
 */
export function closeMatches(name: string, candidates: Iterable<string>, max = 5): string[] {
  const scored: Array<[string, number]> = [];
  const limit = Math.max(2, Math.floor(name.length / 3));
  for (const c of candidates) {
    const d = editDistance(name, c);
    const related = c.includes(name) || name.includes(c) || sharesParts(name, c);
    if (d <= limit || related) scored.push([c, related ? Math.min(d, limit) : d]);
  }
  scored.sort((x, y) => x[1] - y[1] || x[0].localeCompare(y[0]));
  return scored.slice(0, max).map(([c]) => c);
}

function sharesParts(a: string, b: string): boolean {
  const pa = a.split(/[_\-./]/).filter((p) => p.length > 2);
  if (pa.length < 2) return false;
  const pb = new Set(b.split(/[_\-./]/));
  return pa.every((p) => pb.has(p));
}

export function didYouMean(name: string, candidates: Iterable<string>): string {
  const m = closeMatches(name, candidates);
  return m.length ? ` Did you mean: ${m.join(', ')}?` : '';
}
