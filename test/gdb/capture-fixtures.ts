/*
 * Regenerates test/fixtures/gdb/ from a real QEMU run with the stock kernel:
 *   npx tsx test/gdb/capture-fixtures.ts
 * Not a test (tap runs *.test.ts only). Boots the gdb test guest under TCG,
 * stops at do_sys_openat2, and saves what QEMU 7.2's gdbstub sent.
 */
import { writeFile } from 'node:fs/promises';
import { TempDir } from '../../harness/util/tempdir.ts';
import { GdbClient } from '../../harness/vm/gdb.ts';
import { SymbolTable } from '../../harness/vm/symbols.ts';
import { buildTestGuest, TestVm } from './qemu-guest.ts';

const out = (name: string) => new URL(`../fixtures/gdb/${name}`, import.meta.url);

await using tmp = await TempDir.create('gdb-fixtures');
const guest = await buildTestGuest(tmp);
await using vm = await TestVm.launch(tmp, guest, { accel: 'tcg' });
const kallsyms = await vm.kallsyms();
const syms = SymbolTable.parse(kallsyms);

// The ext4 and jbd2 part of the stock kernel's kallsyms (the full text is 1.9 MB).
const keep = /ext4|jbd2|migrate|^_s?text$|^_etext$|do_sys_open|kjournald/;
const lines = kallsyms.split('\n').filter((l) => keep.test(l.split(/\s+/)[2] ?? ''));
await writeFile(out('stock-6.1-kallsyms-ext4-jbd2.txt'), lines.join('\n') + '\n');

const gdb = await GdbClient.connect(vm.gdbSocket);
await writeFile(out('qemu-7.2-target.xml'), await gdb.xferRead('features', 'target.xml'));
await writeFile(out('qemu-7.2-i386-64bit.xml'), await gdb.xferRead('features', 'i386-64bit.xml'));
const addr = syms.resolve('do_sys_openat2');
await gdb.insertBreakpoint(addr);
await gdb.resume();
await gdb.waitStop(60_000);
await writeFile(out('qemu-7.2-g-at-do_sys_openat2.hex'), (await gdb.request('g')) + '\n');
await gdb.removeBreakpoint(addr);
await gdb.detach();
await writeFile(out('qemu-7.2-session.txt'), gdb.transcript.join('\n') + '\n');
console.log(`saved; do_sys_openat2 at 0x${addr.toString(16)}, ${lines.length} kallsyms lines`);
