/**
 * The kernel a machine boots, as far as the machine layer needs to know it:
 * the file QEMU loads and a stable name for it. The kernel stage's
 * KernelInfo (stock, built or a path, with release, modules, System.map)
 * has both fields, so callers pass theirs unchanged; the machine layer
 * knows nothing of how a kernel was found or built.
 */
export interface BootKernel {
  /** Stable identity: part of the saved agent-ready state's key, and how tests tell machines apart. */
  id: string;
  /** What QEMU's -kernel loads. */
  bzImage: string;
}
