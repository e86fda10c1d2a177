/**
 * The cutover plan: which VMs move together (a group), their disks, how each side runs
 * them, the runbook for starting them at the destination, and the schedule. A JSON file,
 * version 1, described field by field in docs/FORMAT.md; `parsePlan` checks all of it and
 * names every wrong field with the value it received.
 */
import { FerryError, parseDuration } from '../core/index.js';

export const planVersion = 1;

export interface CutoverPlan {
  version: typeof planVersion;
  /** Names the group in reports and in the database. */
  name: string;
  /** Store URL of the disks that name none (file:/path or s3://bucket/prefix). */
  store?: string;
  vms: VmPlan[];
  runbook: Runbook;
  schedule: Schedule;
}

export interface VmPlan {
  name: string;
  disks: DiskPlan[];
  source: SideSpec;
  destination: SideSpec;
  health: HealthSpec;
}

export interface DiskPlan {
  /** The disk's id at its filter. */
  id: string;
  /** The control socket of the `ferry filter` serving the disk at the source. */
  control: string;
  /** The replica image at the destination (made by `ferry replica init`). */
  replica: string;
  store: string;
}

export type SideSpec = QemuSide | HooksSide;

export interface QemuSide {
  driver: 'qemu';
  /** Source: QMP socket of the running VM. Destination: the directory the VM runs in. */
  qmp?: string;
  runDir?: string;
  launch?: QemuLaunch;
}

export interface QemuLaunch {
  kernel: string;
  initrd?: string;
  append?: string;
  memoryMiB?: number;
  cpus?: number;
  accel?: 'tcg' | 'kvm';
  binary?: string;
  extraArgs?: string[];
}

export interface HooksSide {
  driver: 'hooks';
  /** argv per action; run without a shell, with FERRY_VM set. */
  commands: Partial<Record<'start' | 'pause' | 'resume' | 'stop' | 'status' | 'health', string[]>>;
  /** The guest's console as a file, for console health checks. */
  consoleFile?: string;
}

export interface HealthSpec {
  /** A regular expression the destination guest prints on its console once it is healthy. */
  console?: string;
  /** A command (argv) that exits 0 once the VM is healthy. */
  command?: string[];
  timeoutMs: number;
}

export interface BootStep {
  vms: string[];
  /** Wait this long after the step's VMs are healthy before the next step. */
  delayMs: number;
}

export interface Runbook {
  boot: BootStep[];
  /** When a VM fails to start or to become healthy: stop the runbook, or go on with the next step. */
  onFailure: 'stop' | 'continue';
}

export interface Schedule {
  /** Not before this time (ms since the epoch); undefined: now. */
  atMs?: number;
  /** Give up this long after `at` if the cutover could not start (pre-checks never passed). */
  windowMs: number;
  /** Downtime budget: the predicted pause must fit in it before the sources are paused. */
  budgetMs: number;
  /** Replicas may lag the sources by at most this much when the pause starts. */
  maxLagSeconds: number;
  /** Wait for the operator's go once the pre-checks pass. */
  hold: boolean;
  verify: 'deltas' | 'full';
  /** The quiesce lease on each source disk. */
  leaseMs: number;
}

export const defaultSchedule = { windowMs: 30 * 60_000, budgetMs: 2000, maxLagSeconds: 10, hold: false, verify: 'deltas', leaseMs: 30_000 } as const;
const defaultHealthTimeoutMs = 120_000;

/** Collects what is wrong with a plan, each with its path, and throws them all at once. */
class Problems {
  readonly list: string[] = [];
  add(path: string, expected: string, received: unknown): undefined {
    this.list.push(`${path}: expected ${expected}, received ${describe(received)}`);
    return undefined;
  }
  object(path: string, value: unknown): Record<string, unknown> | undefined {
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) return value as Record<string, unknown>;
    return this.add(path, 'an object', value);
  }
  string(path: string, value: unknown, optional = false): string | undefined {
    if (value === undefined && optional) return undefined;
    if (typeof value === 'string' && value.length > 0) return value;
    return this.add(path, 'a non-empty string', value);
  }
  name(path: string, value: unknown): string | undefined {
    if (typeof value === 'string' && /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(value)) return value;
    return this.add(path, "a name of 1 to 64 letters, digits, '.', '_' or '-'", value);
  }
  int(path: string, value: unknown, min: number, max: number): number | undefined {
    if (value === undefined) return undefined;
    if (Number.isSafeInteger(value) && (value as number) >= min && (value as number) <= max) return value as number;
    return this.add(path, `an integer from ${min} to ${max}`, value);
  }
  bool(path: string, value: unknown): boolean | undefined {
    if (value === undefined || typeof value === 'boolean') return value;
    return this.add(path, 'true or false', value);
  }
  argv(path: string, value: unknown): string[] | undefined {
    if (value === undefined) return undefined;
    if (Array.isArray(value) && value.length > 0 && value.every((a) => typeof a === 'string')) return value as string[];
    return this.add(path, 'a command as a non-empty array of strings', value);
  }
  duration(path: string, value: unknown): number | undefined {
    if (value === undefined) return undefined;
    if (typeof value === 'string') {
      try {
        return parseDuration(value, path);
      } catch {
        /* reported below */
      }
    }
    return this.add(path, 'a duration such as "500ms", "30s", "10m"', value);
  }
  oneOf<T extends string>(path: string, value: unknown, choices: readonly T[]): T | undefined {
    if (value === undefined) return undefined;
    if (choices.includes(value as T)) return value as T;
    return this.add(path, choices.map((c) => JSON.stringify(c)).join(' or '), value);
  }
  unknownKeys(path: string, object: Record<string, unknown>, known: string[]): void {
    for (const key of Object.keys(object)) if (!known.includes(key)) this.list.push(`${path}.${key}: unknown field`);
  }
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  const text = JSON.stringify(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/** Parses and checks a plan; `source` (its file name) goes into the error message. */
export function parsePlan(text: string, source = 'plan'): CutoverPlan {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new FerryError('bad-input', `${source}: not valid JSON: ${(err as Error).message}`);
  }
  const p = new Problems();
  const plan = checkPlan(p, raw);
  if (p.list.length > 0 || !plan) {
    throw new FerryError('bad-input', `${source} is not a valid cutover plan:\n  ${p.list.join('\n  ')}`);
  }
  return plan;
}

/** Checks one side of a VM as a plan's `vms[i].source` or `.destination` is checked. */
export function parseSideSpec(raw: unknown, side: 'source' | 'destination', path: string = side): SideSpec {
  const p = new Problems();
  const spec = checkSide(p, path, raw, side);
  if (p.list.length > 0 || !spec) throw new FerryError('bad-input', p.list.join('; '));
  return spec;
}

function checkPlan(p: Problems, raw: unknown): CutoverPlan | undefined {
  const o = p.object('plan', raw);
  if (!o) return undefined;
  p.unknownKeys('plan', o, ['version', 'name', 'store', 'vms', 'runbook', 'schedule']);
  if (o.version !== planVersion) p.add('version', String(planVersion), o.version);
  const name = p.name('name', o.name);
  const store = p.string('store', o.store, true);
  const vms: VmPlan[] = [];
  if (!Array.isArray(o.vms) || o.vms.length === 0) p.add('vms', 'a non-empty array of VMs', o.vms);
  else o.vms.forEach((vm, i) => {
    const checked = checkVm(p, `vms[${i}]`, vm, store);
    if (checked) vms.push(checked);
  });
  const names = vms.map((vm) => vm.name);
  names.forEach((n, i) => {
    if (names.indexOf(n) !== i) p.add(`vms[${i}].name`, 'a name no other VM of the plan has', n);
  });
  const disks = vms.flatMap((vm) => vm.disks.map((d) => `${d.control}\0${d.id}`));
  disks.forEach((d, i) => {
    if (disks.indexOf(d) !== i) p.list.push(`vms: disk ${JSON.stringify(d.split('\0')[1])} of filter ${d.split('\0')[0]} appears twice`);
  });
  const replicas = vms.flatMap((vm) => vm.disks.map((d) => d.replica));
  replicas.forEach((r, i) => {
    if (replicas.indexOf(r) !== i) p.list.push(`vms: replica ${r} appears twice`);
  });
  const runbook = checkRunbook(p, o.runbook, names);
  const schedule = checkSchedule(p, o.schedule);
  if (!name || !runbook || !schedule) return undefined;
  return { version: planVersion, name, ...(store ? { store } : {}), vms, runbook, schedule };
}

function checkVm(p: Problems, path: string, raw: unknown, defaultStore: string | undefined): VmPlan | undefined {
  const o = p.object(path, raw);
  if (!o) return undefined;
  p.unknownKeys(path, o, ['name', 'disks', 'source', 'destination', 'health']);
  const name = p.name(`${path}.name`, o.name);
  const disks: DiskPlan[] = [];
  if (!Array.isArray(o.disks) || o.disks.length === 0) p.add(`${path}.disks`, 'a non-empty array of disks', o.disks);
  else o.disks.forEach((disk, i) => {
    const d = p.object(`${path}.disks[${i}]`, disk);
    if (!d) return;
    const at = `${path}.disks[${i}]`;
    p.unknownKeys(at, d, ['id', 'control', 'replica', 'store']);
    const id = p.name(`${at}.id`, d.id);
    const control = p.string(`${at}.control`, d.control);
    const replica = p.string(`${at}.replica`, d.replica);
    const store = p.string(`${at}.store`, d.store, true) ?? defaultStore;
    if (!store) p.add(`${at}.store`, 'a store URL (here or in the plan\'s "store")', d.store);
    if (id && control && replica && store) disks.push({ id, control, replica, store });
  });
  const source = checkSide(p, `${path}.source`, o.source, 'source');
  const destination = checkSide(p, `${path}.destination`, o.destination, 'destination');
  const health = checkHealth(p, `${path}.health`, o.health);
  if (!name || !source || !destination || !health) return undefined;
  return { name, disks, source, destination, health };
}

function checkSide(p: Problems, path: string, raw: unknown, side: 'source' | 'destination'): SideSpec | undefined {
  const o = p.object(path, raw);
  if (!o) return undefined;
  if (o.driver === 'qemu') {
    p.unknownKeys(path, o, ['driver', 'qmp', 'runDir', 'launch']);
    if (side === 'source') {
      const qmp = p.string(`${path}.qmp`, o.qmp);
      if (o.launch !== undefined) p.list.push(`${path}.launch: a source VM is already running; ferry only pauses, resumes and stops it`);
      return qmp ? { driver: 'qemu', qmp } : undefined;
    }
    const runDir = p.string(`${path}.runDir`, o.runDir);
    const launch = checkLaunch(p, `${path}.launch`, o.launch);
    return runDir && launch ? { driver: 'qemu', runDir, launch } : undefined;
  }
  if (o.driver === 'hooks') {
    p.unknownKeys(path, o, ['driver', 'commands', 'consoleFile']);
    const c = p.object(`${path}.commands`, o.commands);
    if (!c) return undefined;
    const actions = ['start', 'pause', 'resume', 'stop', 'status', 'health'] as const;
    p.unknownKeys(`${path}.commands`, c, [...actions]);
    const commands: HooksSide['commands'] = {};
    for (const action of actions) {
      const argv = p.argv(`${path}.commands.${action}`, c[action]);
      if (argv) commands[action] = argv;
    }
    const needed = side === 'source' ? (['pause', 'resume', 'stop', 'status'] as const) : (['start', 'stop', 'status'] as const);
    for (const action of needed) if (!c[action]) p.add(`${path}.commands.${action}`, `a command (the ${side} needs it)`, undefined);
    const consoleFile = p.string(`${path}.consoleFile`, o.consoleFile, true);
    return { driver: 'hooks', commands, ...(consoleFile ? { consoleFile } : {}) };
  }
  return p.add(`${path}.driver`, '"qemu" or "hooks"', o.driver);
}

function checkLaunch(p: Problems, path: string, raw: unknown): QemuLaunch | undefined {
  const o = p.object(path, raw);
  if (!o) return undefined;
  p.unknownKeys(path, o, ['kernel', 'initrd', 'append', 'memoryMiB', 'cpus', 'accel', 'binary', 'extraArgs']);
  const kernel = p.string(`${path}.kernel`, o.kernel);
  const launch: QemuLaunch = { kernel: kernel ?? '' };
  const initrd = p.string(`${path}.initrd`, o.initrd, true);
  const append = typeof o.append === 'string' ? o.append : o.append === undefined ? undefined : p.add(`${path}.append`, 'a string', o.append);
  const memoryMiB = p.int(`${path}.memoryMiB`, o.memoryMiB, 16, 1 << 20);
  const cpus = p.int(`${path}.cpus`, o.cpus, 1, 1024);
  const accel = p.oneOf(`${path}.accel`, o.accel, ['tcg', 'kvm'] as const);
  const binary = p.string(`${path}.binary`, o.binary, true);
  const extraArgs = o.extraArgs === undefined ? undefined : Array.isArray(o.extraArgs) && o.extraArgs.every((a) => typeof a === 'string') ? (o.extraArgs as string[]) : p.add(`${path}.extraArgs`, 'an array of strings', o.extraArgs);
  Object.assign(launch, { initrd, append, memoryMiB, cpus, accel, binary, extraArgs });
  for (const key of Object.keys(launch) as (keyof QemuLaunch)[]) if (launch[key] === undefined) delete launch[key];
  return kernel ? launch : undefined;
}

function checkHealth(p: Problems, path: string, raw: unknown): HealthSpec | undefined {
  if (raw === undefined) return { timeoutMs: defaultHealthTimeoutMs };
  const o = p.object(path, raw);
  if (!o) return undefined;
  p.unknownKeys(path, o, ['console', 'command', 'timeout']);
  const consoleText = p.string(`${path}.console`, o.console, true);
  if (consoleText !== undefined) {
    try {
      new RegExp(consoleText);
    } catch {
      p.add(`${path}.console`, 'a regular expression', consoleText);
    }
  }
  const command = p.argv(`${path}.command`, o.command);
  const timeoutMs = p.duration(`${path}.timeout`, o.timeout) ?? defaultHealthTimeoutMs;
  return { ...(consoleText ? { console: consoleText } : {}), ...(command ? { command } : {}), timeoutMs };
}

function checkRunbook(p: Problems, raw: unknown, names: string[]): Runbook | undefined {
  if (raw === undefined) return { boot: [{ vms: names, delayMs: 0 }], onFailure: 'stop' };
  const o = p.object('runbook', raw);
  if (!o) return undefined;
  p.unknownKeys('runbook', o, ['boot', 'onFailure']);
  const boot: BootStep[] = [];
  if (!Array.isArray(o.boot) || o.boot.length === 0) p.add('runbook.boot', 'a non-empty array of boot steps', o.boot);
  else o.boot.forEach((step, i) => {
    const s = p.object(`runbook.boot[${i}]`, step);
    if (!s) return;
    p.unknownKeys(`runbook.boot[${i}]`, s, ['vms', 'delay']);
    if (!Array.isArray(s.vms) || s.vms.length === 0) return p.add(`runbook.boot[${i}].vms`, 'a non-empty array of VM names', s.vms);
    const vms = s.vms.filter((n, j) => (names.includes(n as string) ? true : p.add(`runbook.boot[${i}].vms[${j}]`, `one of the plan's VMs (${names.join(', ')})`, n)));
    boot.push({ vms: vms as string[], delayMs: p.duration(`runbook.boot[${i}].delay`, s.delay) ?? 0 });
  });
  const booted = boot.flatMap((s) => s.vms);
  for (const n of names) if (!booted.includes(n)) p.list.push(`runbook.boot: VM ${JSON.stringify(n)} is in no boot step`);
  booted.forEach((n, i) => {
    if (booted.indexOf(n) !== i) p.list.push(`runbook.boot: VM ${JSON.stringify(n)} is in more than one boot step`);
  });
  const onFailure = p.oneOf('runbook.onFailure', o.onFailure, ['stop', 'continue'] as const) ?? 'stop';
  return { boot, onFailure };
}

function checkSchedule(p: Problems, raw: unknown): Schedule | undefined {
  if (raw === undefined) return { ...defaultSchedule };
  const o = p.object('schedule', raw);
  if (!o) return undefined;
  p.unknownKeys('schedule', o, ['at', 'window', 'budget', 'maxLagSeconds', 'hold', 'verify', 'lease']);
  let atMs: number | undefined;
  if (o.at !== undefined) {
    atMs = typeof o.at === 'string' ? Date.parse(o.at) : NaN;
    if (Number.isNaN(atMs)) atMs = p.add('schedule.at', 'an ISO 8601 time such as "2026-12-06T22:00:00Z"', o.at);
  }
  const schedule: Schedule = {
    ...defaultSchedule,
    ...(atMs !== undefined ? { atMs } : {}),
  };
  schedule.windowMs = p.duration('schedule.window', o.window) ?? schedule.windowMs;
  schedule.budgetMs = p.duration('schedule.budget', o.budget) ?? schedule.budgetMs;
  schedule.maxLagSeconds = p.int('schedule.maxLagSeconds', o.maxLagSeconds, 0, 86_400) ?? schedule.maxLagSeconds;
  schedule.hold = p.bool('schedule.hold', o.hold) ?? schedule.hold;
  schedule.verify = p.oneOf('schedule.verify', o.verify, ['deltas', 'full'] as const) ?? schedule.verify;
  schedule.leaseMs = p.duration('schedule.lease', o.lease) ?? schedule.leaseMs;
  return schedule;
}
