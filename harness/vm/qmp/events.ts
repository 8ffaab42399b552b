import type { QmpEvent } from './protocol.ts';
import { QmpDisconnectedError, QmpTimeoutError } from './errors.ts';

/**
 * Every event a QMP connection received, in order, plus waiters. Events are
 * kept (not just dispatched) because the interesting ones race the caller:
 * QEMU sends SHUTDOWN and closes the socket right after `quit`, often before
 * the caller gets to wait for it.
 */
export class QmpEventLog {
  private readonly events: QmpEvent[] = [];
  private readonly listeners = new Set<(e: QmpEvent) => void>();
  private readonly closeListeners = new Set<(e: QmpDisconnectedError) => void>();
  private closedWith?: QmpDisconnectedError;

  push(e: QmpEvent): void {
    this.events.push(e);
    for (const l of [...this.listeners]) l(e);
  }

  /** No more events will come; waiters that have not matched fail with `reason`. */
  close(reason: QmpDisconnectedError): void {
    if (this.closedWith) return;
    this.closedWith = reason;
    for (const l of [...this.closeListeners]) l(reason);
  }

  get all(): readonly QmpEvent[] {
    return this.events;
  }

  /** A position in the log, for `wait(name, timeout, since)`. */
  get length(): number {
    return this.events.length;
  }

  on(fn: (e: QmpEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /**
   * The first event named `name` at or after position `since` (default 0:
   * one that already arrived counts). Rejects with QmpTimeoutError, or with
   * QmpDisconnectedError once the connection closed without it.
   */
  wait(name: string, timeoutMs: number, since = 0): Promise<QmpEvent> {
    const seen = this.events.slice(since).find((e) => e.event === name);
    if (seen) return Promise.resolve(seen);
    if (this.closedWith) return Promise.reject(new QmpDisconnectedError(`the ${name} event`, this.closedWith));
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        offEvent();
        this.closeListeners.delete(onClose);
      };
      const timer = setTimeout(() => {
        done();
        reject(new QmpTimeoutError(`${name} event`, timeoutMs));
      }, timeoutMs);
      const offEvent = this.on((e) => {
        if (e.event !== name) return;
        done();
        resolve(e);
      });
      const onClose = (reason: QmpDisconnectedError) => {
        done();
        reject(new QmpDisconnectedError(`the ${name} event`, reason));
      };
      this.closeListeners.add(onClose);
    });
  }

  /**
   * Events from now on as an async iterator; it ends when the connection
   * closes. Breaking out of a for-await loop unsubscribes.
   */
  stream(): AsyncIterableIterator<QmpEvent> {
    const queue: QmpEvent[] = [];
    let wake: (() => void) | undefined;
    let ended = this.closedWith !== undefined;
    const off = this.on((e) => {
      queue.push(e);
      wake?.();
    });
    const onClose = () => {
      ended = true;
      wake?.();
    };
    this.closeListeners.add(onClose);
    const stop = () => {
      ended = true;
      off();
      this.closeListeners.delete(onClose);
      wake?.();
    };
    const iterator: AsyncIterableIterator<QmpEvent> = {
      next: async () => {
        while (!queue.length && !ended) await new Promise<void>((r) => (wake = r));
        wake = undefined;
        const value = queue.shift();
        if (value) return { value, done: false };
        stop();
        return { value: undefined, done: true };
      },
      return: async () => {
        stop();
        return { value: undefined, done: true };
      },
      [Symbol.asyncIterator]: () => iterator,
    };
    return iterator;
  }
}
