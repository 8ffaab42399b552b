import type { Command } from 'commander';
import { ExitCode } from '../util/errors.ts';

/**
 * The exit code each program's command returned. commander's parseAsync
 * resolves to the program, not to what the action returned, so an action that
 * decides an exit code is wrapped in `returnsExitCode`, which keeps the code
 * here under the program the action ran in.
 */
const exitCodes = new WeakMap<Command, number>();

/** An action whose returned number is the command's exit code. */
export function returnsExitCode<A extends unknown[]>(fn: (this: Command, ...args: A) => Promise<number>) {
  return async function (this: Command, ...args: A): Promise<void> {
    exitCodes.set(rootOf(this), await fn.apply(this, args));
  };
}

/** What the last action run under `program` returned; 0 for an action that returns none. */
export function commandExitCode(program: Command): number {
  return exitCodes.get(program) ?? ExitCode.pass;
}

function rootOf(cmd: Command): Command {
  let root = cmd;
  while (root.parent) root = root.parent;
  return root;
}
