import { writeFile } from 'node:fs/promises';

/**
 * One message over the QMP socket. `t` is wall-clock milliseconds (to line
 * up with the console log and the agent's transcript), `mono` milliseconds
 * since the client was created (for intervals that must not jump). A line
 * that was not JSON is kept verbatim in `raw`.
 */
export interface QmpTranscriptEntry {
  t: number;
  mono: number;
  dir: 'send' | 'recv';
  msg?: unknown;
  raw?: string;
}

/** Everything sent and received on one QMP connection, saved as JSONL with a case. */
export class QmpTranscript {
  private readonly origin = performance.now();
  readonly entries: QmpTranscriptEntry[] = [];

  sent(msg: unknown): void {
    this.entries.push({ t: Date.now(), mono: this.now(), dir: 'send', msg });
  }

  received(line: string, msg: unknown | undefined): void {
    this.entries.push({ t: Date.now(), mono: this.now(), dir: 'recv', ...(msg === undefined ? { raw: line } : { msg }) });
  }

  toJsonl(): string {
    return this.entries.map((e) => JSON.stringify(e)).join('\n') + (this.entries.length ? '\n' : '');
  }

  async save(path: string): Promise<void> {
    await writeFile(path, this.toJsonl());
  }

  private now(): number {
    return Math.round((performance.now() - this.origin) * 1000) / 1000;
  }
}
