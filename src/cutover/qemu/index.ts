/** The QEMU hypervisor driver: a QMP client and a VM launched with its disk over NBD. */
export { QmpClient, QmpError, type QmpConnectOptions, type QmpEvent, type QmpExecuteOptions, type QmpGreeting } from './qmp-client.js';
export { QemuVm, type QemuExit, type QemuNbdDisk, type QemuStatus, type QemuVmOptions } from './qemu-vm.js';
