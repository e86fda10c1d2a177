/** The hypervisor drivers: VmDriver over QEMU (QMP), and over an operator's commands. */
export { QemuDriver, type QemuDestinationSpec, type QemuDriverOptions, type QemuSourceSpec } from './qemu-driver.js';
export { HooksDriver, hookActions, type HookAction, type HooksDriverOptions } from './hooks-driver.js';
export { createVmDriver, type CreateVmDriverOptions } from './create.js';
