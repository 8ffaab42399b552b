/**
 * The guest agent's line protocol (vm-images/guest/qcrash-agent), one
 * message per line over the virtio-serial port `qcrash.agent`:
 *
 *   guest -> host  "ready <b64 uname -r \n /proc/uptime>"   once, when the agent starts
 *   host -> guest  "<id> [hold] [cpu=N] [progress=K] <command> <b64 arg>..."
 *                                                            every argument base64 ("=" for empty)
 *   guest -> host  "<id> held"                               hold: waiting for "<id> go"
 *   host -> guest  "<id> go"
 *   guest -> host  "<id> start"                              the step is about to run (a marker)
 *   guest -> host  "<id> done <exit status> [<b64 output>]"  stdout+stderr, at most 16 MiB; absent when empty
 *
 * `cpu=N` runs the step pinned to vCPU N (taskset on the agent shell for
 * the step's duration): everything the step starts, a background writer
 * too, inherits the pin. `progress=K` asks qcrash-io's writers started by
 * the step to print "qcrash-io: MODE stored=N" (mmap-holes) or
 * "qcrash-io: MODE rounds=N" every K stores or rounds to /dev/console, so
 * the host sees a writer's progress in the console log while the agent is
 * busy (a hold point's marker, harness/crash/points/hold.ts).
 *
 * `hello` answers with what the agent said in its "ready" line (uptime as
 * of the agent's start): after a snapshot restore it costs no fork.
 *
 * Base64 arguments mean no byte of a path or an option is ever seen by the
 * guest shell's parser.
 */
export type AgentArg = string | number;

/** How a step runs in the guest, besides its command and arguments. */
export interface StepOptions {
  /** Announce the step and wait for "go" before its start marker. */
  hold?: boolean;
  /** Pin the step (and whatever it starts) to this vCPU. */
  cpu?: number;
  /** Writers started by the step report progress on the console every this many stores or rounds. */
  progress?: number;
}

export function encodeCommand(id: number, command: string, args: readonly AgentArg[], opts: boolean | StepOptions): string {
  const o: StepOptions = typeof opts === 'boolean' ? { hold: opts } : opts;
  for (const [k, v] of [
    ['cpu', o.cpu],
    ['progress', o.progress],
  ] as const) {
    if (v !== undefined && (!Number.isInteger(v) || v < (k === 'cpu' ? 0 : 1)))
      throw new RangeError(`agent: ${k}=${v} is not a valid value`);
  }
  const encoded = args.map((a) => Buffer.from(String(a)).toString('base64') || '=');
  return [
    String(id),
    ...(o.hold ? ['hold'] : []),
    ...(o.cpu !== undefined ? [`cpu=${o.cpu}`] : []),
    ...(o.progress !== undefined ? [`progress=${o.progress}`] : []),
    command,
    ...encoded,
  ].join(' ');
}

export type AgentMessage =
  | { kind: 'ready'; info: string }
  | { kind: 'held'; id: number }
  | { kind: 'start'; id: number }
  | { kind: 'done'; id: number; exitCode: number; output: string }
  | { kind: 'unknown'; line: string };

export function parseAgentLine(line: string): AgentMessage {
  const [first = '', kind, code, b64] = line.split(' ');
  if (first === 'ready') return { kind: 'ready', info: decode(kind) };
  const id = Number(first);
  if (!Number.isInteger(id) || id <= 0) return { kind: 'unknown', line };
  if (kind === 'held' || kind === 'start') return { kind, id };
  if (kind === 'done' && code !== undefined && /^\d+$/.test(code))
    return { kind: 'done', id, exitCode: Number(code), output: decode(b64) };
  return { kind: 'unknown', line };
}

function decode(b64: string | undefined): string {
  return Buffer.from(b64 ?? '', 'base64').toString('utf8');
}

/** The agent's "ready"/"hello" output: `uname -r`, then /proc/uptime. */
export function parseHello(info: string): { release: string; uptime: number } {
  const [release = '', uptime = '0'] = info.trim().split('\n');
  return { release: release.trim(), uptime: Number(uptime.split(' ')[0]) };
}
