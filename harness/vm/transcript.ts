import { writeFile } from 'node:fs/promises';

/**
 * One message over a VM channel (QMP, agent, gdbstub). `t` is wall-clock
 * milliseconds (to line up the channels with each other and with the console
 * log), `mono` milliseconds since the channel was created (for intervals
 * that must not jump). `msg` is the decoded message where the protocol has
 * one (QMP's JSON); `raw` the line or packet as it went over the wire.
 */
export interface TranscriptEntry {
  t: number;
  mono: number;
  dir: 'send' | 'recv';
  msg?: unknown;
  raw?: string;
  /** A note of the client's own ("disarmed", "interrupt"), not a message. */
  note?: string;
}

/** Everything sent and received on one channel, saved with a case as JSONL or text. */
export class Transcript {
  private readonly origin = performance.now();
  readonly entries: TranscriptEntry[] = [];

  sent(raw: string, msg?: unknown): void {
    this.entries.push({ t: Date.now(), mono: this.now(), dir: 'send', ...(msg === undefined ? { raw } : { msg }) });
  }

  received(raw: string, msg?: unknown): void {
    this.entries.push({ t: Date.now(), mono: this.now(), dir: 'recv', ...(msg === undefined ? { raw } : { msg }) });
  }

  note(text: string): void {
    this.entries.push({ t: Date.now(), mono: this.now(), dir: 'send', note: text });
  }

  toJsonl(): string {
    return this.entries.map((e) => JSON.stringify(e)).join('\n') + (this.entries.length ? '\n' : '');
  }

  /** "<wall ms> > line" per entry: what a person greps in a case folder. */
  toText(maxLine = 300): string {
    return (
      this.entries
        .map((e) => {
          const body = e.note !== undefined ? `(${e.note})` : (e.raw ?? JSON.stringify(e.msg));
          return `${e.t} ${e.dir === 'send' ? '>' : '<'} ${body.length > maxLine ? `${body.slice(0, maxLine)}...` : body}`;
        })
        .join('\n') + (this.entries.length ? '\n' : '')
    );
  }

  async save(path: string, format: 'jsonl' | 'text' = 'jsonl'): Promise<void> {
    await writeFile(path, format === 'jsonl' ? this.toJsonl() : this.toText());
  }

  private now(): number {
    return Math.round((performance.now() - this.origin) * 1000) / 1000;
  }
}
