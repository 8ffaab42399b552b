import { mkdir, readFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { ConfigError } from '../util/errors.ts';
import { sha256 } from '../util/hash.ts';
import { writeFileAtomic } from '../util/atomic.ts';

/**
 * A patch series as kernel developers send it: several patch files
 * (`git format-patch` output, plain diffs), or an mbox holding several
 * patches (`git format-patch --stdout`, the files of a series concatenated,
 * `b4 am`'s .mbx), in order. Mails without a diff (a "[PATCH 0/N]" cover
 * letter, a review reply in a saved thread) are skipped: they change no code.
 */
export interface SeriesPatch {
  /** 1-based position in the series. */
  index: number;
  /** The file to apply: the given file itself when it holds just this patch, else a piece written for it. */
  file: string;
  /** Where it came from: the given file, with the message's position when the file held several. */
  origin: string;
  subject: string;
  sha256: string;
  text: string;
}

export interface SkippedMail {
  origin: string;
  subject: string;
  why: string;
}

export interface PatchSeries {
  patches: SeriesPatch[];
  skipped: SkippedMail[];
}

/**
 * An mbox "From " separator line, as git mailsplit's is_from_line accepts it:
 * a sender and a date with a time of day and a year
 * ("From 1b2c... Mon Sep 17 00:00:00 2001", b4's "From git@z Thu Jan  1 00:00:00 1970").
 * A commit message line that starts with "From " has no such date.
 */
const postmark = /^From \S+ +.*\d{1,2}:\d\d(:\d\d)? .*\d{4}\s*$/;

/**
 * The messages of an mbox, each exactly as it stands in the file (its
 * "From " line included), so a patch's hash is the same whether it came alone
 * or inside an mbox. Text that does not start with a separator is one patch.
 */
export function splitMbox(text: string): string[] {
  const lines = text.split(/(?<=\n)/);
  const firstReal = lines.findIndex((l) => l.trim() !== '');
  if (firstReal < 0 || !postmark.test(lines[firstReal]!.replace(/\r?\n$/, ''))) return [text];
  const out: string[] = [];
  let cur: string[] = [];
  for (const l of lines.slice(firstReal)) {
    if (postmark.test(l.replace(/\r?\n$/, '')) && cur.length) {
      out.push(cur.join(''));
      cur = [];
    }
    cur.push(l);
  }
  if (cur.length) out.push(cur.join(''));
  return out;
}

/** The header block of a mail (up to the first empty line), or nothing for a plain diff. */
function headerBlock(text: string): string | undefined {
  const end = text.search(/\r?\n\r?\n/);
  const head = end < 0 ? text : text.slice(0, end);
  return /^(Subject|From|Date|Message-I[dD]):/m.test(head) ? head : undefined;
}

/**
 * A patch's subject: the mail's Subject header with folded lines joined
 * ("[PATCH 2/3] ext4: ..."), else the first non-empty line of a plain diff's
 * description, as build.ts records it.
 */
export function patchSubject(text: string, fallback: string): string {
  const head = headerBlock(text);
  const m = head ? /^Subject:[ \t]*(.*(?:\r?\n[ \t].*)*)/m.exec(head) : undefined;
  if (m) return m[1]!.replace(/\r?\n[ \t]+/g, ' ').trim() || fallback;
  return (
    text
      .split('\n')
      .find((l) => l.trim() && !postmark.test(l))
      ?.trim() ?? fallback
  );
}

/** A unified or git diff: a "---"/"+++" file header pair, or a git diff header (also binary and mode-only changes). */
export function hasDiff(text: string): boolean {
  return /^diff --git \S/m.test(text) || /^--- \S.*\r?\n\+\+\+ \S/m.test(text);
}

/** "0001-ext4-note-the-first-variable.patch", as git format-patch names files. */
function pieceName(index: number, subject: string): string {
  const slug = subject
    .replace(/^\s*(\[[^\]]*\]\s*)+/, '')
    .replace(/[^A-Za-z0-9._]+/g, '-')
    .replace(/^[-.]+|[-.]+$/g, '')
    .slice(0, 52);
  return `${String(index).padStart(4, '0')}-${slug || 'patch'}.patch`;
}

/**
 * Read the series from `files` in order. A file holding several mails is
 * split, and each patch in it written to `piecesDir` (byte for byte, so a
 * kernel already built with the same patch text is found in the cache);
 * a file holding one patch is used as it is. Mails without a diff are skipped
 * and listed.
 */
export async function readPatchSeries(files: string[], piecesDir: string): Promise<PatchSeries> {
  if (!files.length) throw new ConfigError('no patch given: --series needs --patch FILE (a patch, or an mbox of a series)');
  const patches: SeriesPatch[] = [];
  const skipped: SkippedMail[] = [];
  for (const f of files) {
    let text: string;
    try {
      text = await readFile(f, 'utf8');
    } catch {
      throw new ConfigError(`patch not found: ${f}`);
    }
    const mails = splitMbox(text);
    const found: Array<{ text: string; origin: string; subject: string }> = [];
    mails.forEach((m, i) => {
      const origin = mails.length > 1 ? `${f} (mail ${i + 1} of ${mails.length})` : f;
      const subject = patchSubject(m, basename(f));
      if (hasDiff(m)) found.push({ text: m, origin, subject });
      else skipped.push({ origin, subject, why: /\[[^\]]*\b0+\/\d+\s*\]/.test(subject) ? 'cover letter' : 'no diff' });
    });
    for (const p of found) {
      const index = patches.length + 1;
      let file = resolve(f);
      if (mails.length > 1) {
        await mkdir(piecesDir, { recursive: true });
        file = resolve(join(piecesDir, pieceName(index, p.subject)));
        await writeFileAtomic(file, p.text);
      }
      patches.push({ index, file, origin: p.origin, subject: p.subject, sha256: sha256(p.text), text: p.text });
    }
  }
  if (!patches.length) {
    throw new ConfigError(
      `no patch in ${files.join(', ')}: ${skipped.length ? `only mails without a diff (${skipped.map((s) => `"${s.subject}"`).join(', ')})` : 'the files are empty'}`,
    );
  }
  return { patches, skipped };
}
