/** No default devices, no config files, no display, and an exit where the guest would reboot: the VMs and the KVM probe alike. */
export const bareMachineArgs = ['-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot'];
