/** A kernel qcrash can boot. Either Debian's stock kernel or one qcrash built. */
export interface KernelInfo {
  /** Stable identity: "stock-6.1.0-56-cloud-amd64" or "build-<hash>". */
  id: string;
  kind: 'stock' | 'built' | 'path';
  /** uname -r style release string when known. */
  release: string;
  bzImage: string;
  /** System.map for symbol resolution (gdbstub kill points); absent means "ask the guest's /proc/kallsyms". */
  systemMap?: string;
  /** /lib/modules/<release> for a modular kernel whose virtio drivers must go into the initramfs. */
  modulesDir?: string;
  /** True when virtio-pci/blk/console and ext4 are built in (no modules needed). */
  builtinDrivers: boolean;
  /** Whether the kernel has ACPI (from its config, when known): informational; machines power off with reboot -f on every kernel. */
  acpi?: boolean;
  /** The kernel line ("6.1", "6.12") when known: matrix reports and known-bugs entries group by it. */
  line?: string;
  /** Free-form provenance for reports: source tree, base commit, patch subjects, config hash. */
  provenance?: Record<string, unknown>;
}
