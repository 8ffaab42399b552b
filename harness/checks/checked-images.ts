import type { Finding } from '../findings/finding.ts';
import type { E2fsckRun } from '../image/e2fsck.ts';

/**
 * Recovered images already checked, by identity: within a write-log unit,
 * states whose images differ before e2fsck's journal replay are often the
 * same image after it (a fifth of the default suite's states: a checkpoint
 * the kernel wrote home is what the replay writes home too). e2fsck -fn,
 * its repair and the -fn after it are functions of the image's bytes, so a
 * second state with the same image is given the first one's runs, and the
 * first one's content findings too when it is held to the same
 * expectations (otherwise the content oracle reads the image again: what a
 * state may hold depends on what had been acknowledged at its crash).
 *
 * A state whose identical image is still being checked waits for that
 * check rather than running the same programs beside it. A check that
 * failed leaves nothing: the next state with that image checks it itself.
 */
export interface CheckedImage {
  /** The state whose check this was (its label). */
  state: string;
  /** The image path its runs name (e2fsck prints it): replaced by the next state's own. */
  image: string;
  /** e2fsck -fn, and the -fy repair and the -fn after it when those ran. */
  runs: readonly E2fsckRun[];
  /** The content and durability findings, and the expectations (as a key) they were judged by. */
  content: { key: string; findings: readonly Finding[] };
}

export class CheckedImages {
  private readonly byIdentity = new Map<string, Promise<CheckedImage | undefined>>();

  /** At most this many images are remembered (oldest out first): a unit's states, a few KiB each. */
  constructor(private readonly max = 1024) {}

  /**
   * The check of an image with this identity, when one was made or is
   * under way (awaited); else undefined, and the caller, who now checks it,
   * must call `settle` once with what it found (undefined if it failed).
   */
  async claim(identity: string): Promise<{ earlier: CheckedImage } | { settle: (c: CheckedImage | undefined) => void }> {
    const known = this.byIdentity.get(identity);
    const earlier = known && (await known);
    if (earlier) return { earlier };
    let settle!: (c: CheckedImage | undefined) => void;
    const p = new Promise<CheckedImage | undefined>((resolve) => (settle = resolve));
    this.byIdentity.delete(identity);
    if (this.byIdentity.size >= this.max) this.byIdentity.delete(this.byIdentity.keys().next().value!);
    this.byIdentity.set(identity, p);
    return {
      settle: (c) => {
        if (!c && this.byIdentity.get(identity) === p) this.byIdentity.delete(identity);
        settle(c);
      },
    };
  }
}

/** An earlier state's e2fsck run as the run on `image`: its path replaced, and said to be that state's. */
export function reusedRun(run: E2fsckRun, from: CheckedImage, image: string): E2fsckRun {
  const here = (s: string) => s.split(from.image).join(image);
  return { ...run, argv: run.argv.map(here), text: here(run.text), xml: here(run.xml), reusedFrom: from.state };
}
