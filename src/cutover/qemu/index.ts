/** The QEMU hypervisor driver: a QMP client and a VM launched with its disks (NBD or raw files), attached or detached. */
export { QmpClient, QmpError, type QmpConnectOptions, type QmpEvent, type QmpExecuteOptions, type QmpGreeting } from './qmp-client.js';
export {
  QemuVm,
  type QemuAttachOptions,
  type QemuDisk,
  type QemuExit,
  type QemuFileDisk,
  type QemuNbdDisk,
  type QemuPaths,
  type QemuStatus,
  type QemuVmOptions,
} from './qemu-vm.js';
