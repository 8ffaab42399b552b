import { join } from 'node:path';

/** Case ids contain "/"; each part becomes a directory level, made safe for any filesystem. */
export function caseRelDir(caseId: string): string {
  return join('cases', ...caseId.split('/').map((p) => p.replace(/[^A-Za-z0-9._+-]/g, '_')));
}
