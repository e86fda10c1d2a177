// The ferry migration wizard: plain JavaScript over the wizard API (/v1), no build step.
// Routes: #/ the migrations, #/new the wizard, #/m/<id> a migration's live progress.

const $ = (selector, root = document) => root.querySelector(selector);
const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

let token = sessionStorage.getItem('ferry-token') ?? '';

/** One API call; rejects with the API's message (and its issues) on an error reply. */
async function api(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const reply = await res.json().catch(() => ({}));
  if (res.status === 401) {
    sessionStorage.removeItem('ferry-token');
    location.hash = '#/sign-in';
  }
  if (!res.ok) {
    const error = new Error(reply.error?.message ?? `${method} ${path}: HTTP ${res.status}`);
    error.issues = reply.error?.issues ?? [];
    throw error;
  }
  return reply;
}

function show(id) {
  for (const section of $$('main > section')) section.hidden = section.id !== id;
}

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attributes)) {
    if (k === 'text') node.textContent = v;
    else node.setAttribute(k, v);
  }
  node.append(...children);
  return node;
}

const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
function bytes(n) {
  if (n === undefined || n === null) return '-';
  let i = 0;
  while (n >= 1024 && i < units.length - 1) (n /= 1024), i++;
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}
const seconds = (s) => (s === undefined || s === null ? '-' : s < 120 ? `${s.toFixed(1)} s` : `${Math.round(s / 60)} min`);

// Sign in

$('#sign-in-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  token = $('#token').value.trim();
  try {
    await api('GET', '/v1/migrations');
    sessionStorage.setItem('ferry-token', token);
    location.hash = '#/';
  } catch (err) {
    $('#sign-in-error').textContent = err.message;
  }
});

// The migrations

async function showList() {
  show('list');
  const { migrations } = await api('GET', '/v1/migrations');
  const body = $('#migrations tbody');
  body.replaceChildren(
    ...migrations.map((m) => el('tr', {}, el('td', {}, el('a', { href: `#/m/${m.id}`, text: m.name })), el('td', { class: 'state', text: m.state }), el('td', { text: m.createdAt.replace('T', ' ').slice(0, 19) }))),
  );
}
$('#new-migration').addEventListener('click', () => (location.hash = '#/new'));

// The wizard

const steps = $$('#wizard form.step');
let step = 0;
let hosts = [];

async function showWizard() {
  show('wizard');
  step = 0;
  hosts = (await api('GET', '/v1/hosts')).hosts;
  const option = (h) => el('option', { value: h.id, text: `${h.name} (${h.role}, ${h.agent.url})` });
  const form = steps[0];
  form.sourceHost.replaceChildren(...hosts.filter((h) => h.role !== 'destination').map(option));
  form.destinationHost.replaceChildren(...hosts.filter((h) => h.role !== 'source').map(option));
  if (form.destinationHost.options.length > 1) form.destinationHost.selectedIndex = 1;
  await loadStores();
  renderStep();
}

async function loadStores(select) {
  const { stores } = await api('GET', '/v1/stores');
  const form = steps[2];
  form.store.replaceChildren(...stores.map((s) => el('option', { value: s.id, text: `${s.name} (${s.url})` })));
  if (select) form.store.value = select;
}

function renderStep() {
  $('#steps').replaceChildren(...steps.map((f, i) => el('li', { class: i === step ? 'current' : i < step ? 'done' : '', text: f.dataset.step })));
  steps.forEach((f, i) => (f.hidden = i !== step));
  $('#back').disabled = step === 0;
  $('#next').hidden = step === steps.length - 1;
  $('#create').hidden = step !== steps.length - 1;
  if (steps[step].dataset.step === 'VMs') renderVms();
  if (steps[step].dataset.step === 'Review') $('#review').textContent = JSON.stringify(migrationBody(), null, 2);
}

/** The source host's VMs, each with how the two hosts run it. */
function renderVms() {
  const host = hosts.find((h) => h.id === steps[0].sourceHost.value);
  const list = $('#vm-list');
  if (list.dataset.host === host?.id) return;
  list.dataset.host = host?.id ?? '';
  const vms = host?.inventory?.vms ?? [];
  if (vms.length === 0) return list.replaceChildren(el('p', { class: 'error', text: 'This host has no inventory: add it with its VMs and disks (POST /v1/hosts).' }));
  const field = (label, name, value = '', placeholder = '') => el('label', {}, label, el('input', { name, value, placeholder }));
  list.replaceChildren(
    ...vms.map((vm) =>
      el(
        'fieldset',
        { class: 'vm', 'data-vm': vm.name },
        el('legend', {}, el('label', { class: 'inline' }, el('input', { type: 'checkbox', name: 'move', checked: '' }), ` ${vm.name}: ${vm.disks.map((d) => d.id).join(', ')}`)),
        field('Source QMP socket', 'qmp', '', '/run/vms/db/qmp.sock'),
        field('Destination run directory', 'runDir', '', '/run/ferry/db'),
        field('Kernel', 'kernel', '', '/boot/vmlinuz'),
        field('Initrd', 'initrd'),
        field('Kernel command line', 'append'),
        field('Memory (MiB)', 'memoryMiB', '', '512'),
        field('Healthy when its console shows', 'console', '', 'login:'),
      ),
    ),
  );
}

function migrationBody() {
  const [hostsForm, , storeForm, throttleForm, cutoverForm] = steps;
  const host = hosts.find((h) => h.id === hostsForm.sourceHost.value);
  const vms = $$('#vm-list fieldset.vm')
    .filter((f) => $('input[name=move]', f).checked)
    .map((f) => {
      const value = (name) => $(`input[name=${name}]`, f).value.trim();
      const inventory = host.inventory.vms.find((v) => v.name === f.dataset.vm);
      const launch = { kernel: value('kernel'), ...(value('initrd') ? { initrd: value('initrd') } : {}), ...(value('append') ? { append: value('append') } : {}), ...(value('memoryMiB') ? { memoryMiB: Number(value('memoryMiB')) } : {}) };
      return {
        name: f.dataset.vm,
        disks: inventory.disks.map((d) => ({ id: d.id })),
        source: { driver: 'qemu', qmp: value('qmp') },
        destination: { driver: 'qemu', runDir: value('runDir'), launch },
        ...(value('console') ? { health: { console: value('console'), timeout: '5m' } } : {}),
      };
    });
  const runbook = cutoverForm.runbook.value
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean)
    .map((line) => {
      const [names, delay] = line.split(/\s+after\s+/);
      return { vms: names.split(/\s+/), ...(delay ? { delay } : {}) };
    });
  const at = cutoverForm.at.value ? new Date(`${cutoverForm.at.value}Z`).toISOString() : undefined;
  return {
    name: hostsForm.name.value,
    sourceHost: hostsForm.sourceHost.value,
    destinationHost: hostsForm.destinationHost.value,
    store: storeForm.store.value,
    vms,
    transport: storeForm.transport.value === 'seed' ? { mode: 'seed', device: storeForm.seedDevice.value.trim() } : { mode: 'network' },
    throttle: { rate: throttleForm.rate.value.trim() || 'unlimited' },
    ...(throttleForm.highWater.value || throttleForm.maxDelay.value
      ? { backpressure: { ...(throttleForm.highWater.value ? { highWater: throttleForm.highWater.value } : {}), ...(throttleForm.maxDelay.value ? { maxDelay: throttleForm.maxDelay.value } : {}) } }
      : {}),
    cutover: { ...(at ? { at } : {}), window: cutoverForm.window.value, budget: cutoverForm.budget.value, hold: cutoverForm.hold.checked, verify: cutoverForm.verify.value },
    ...(runbook.length > 0 ? { runbook: { boot: runbook } } : {}),
  };
}

$('#back').addEventListener('click', () => {
  step = Math.max(0, step - 1);
  renderStep();
});
$('#next').addEventListener('click', () => {
  if (!steps[step].reportValidity()) return;
  step = Math.min(steps.length - 1, step + 1);
  renderStep();
});
$('#cancel-wizard').addEventListener('click', () => (location.hash = '#/'));
$('#add-store').addEventListener('click', async () => {
  const form = steps[2];
  const out = $('#store-check');
  try {
    const store = await api('POST', '/v1/stores', { name: form.storeName.value, url: form.storeUrl.value });
    const checked = await api('POST', `/v1/stores/${store.id}/check`);
    out.textContent = checked.lastCheck.message;
    await loadStores(store.id);
  } catch (err) {
    out.textContent = err.message;
  }
});
$('#create').addEventListener('click', async () => {
  const out = $('#create-error');
  out.textContent = '';
  try {
    const created = await api('POST', '/v1/migrations', migrationBody());
    await api('POST', `/v1/migrations/${created.id}/validate`);
    await api('POST', `/v1/migrations/${created.id}/start`);
    location.hash = `#/m/${created.id}`;
  } catch (err) {
    out.replaceChildren(el('span', { text: err.message }), ...(err.issues ?? []).map((i) => el('div', { class: 'issue', text: `${i.path}: ${i.message}` })));
  }
});

// A migration's progress

let watching;

/** Reads the migration's server-sent events (fetch: EventSource cannot send the token). */
async function watch(id, onEvent, signal) {
  const res = await fetch(`/v1/migrations/${id}/stream`, { headers: { authorization: `Bearer ${token}` }, signal });
  if (!res.ok) throw new Error(`the stream of ${id}: HTTP ${res.status}`);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const kind = /^event: (.*)$/m.exec(block)?.[1];
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (kind && data) onEvent(kind, JSON.parse(data));
    }
  }
}

const history = { t: [], toGo: [], backlog: [], lag: [], pause: [] };

async function showProgress(id) {
  show('progress');
  watching?.abort();
  watching = new AbortController();
  for (const k of Object.keys(history)) history[k] = [];
  $('#p-events').replaceChildren();
  $('#report').hidden = true;
  const migration = await api('GET', `/v1/migrations/${id}`);
  $('#p-name').textContent = migration.name;
  $('#progress').dataset.id = id;
  watch(id, (kind, data) => (kind === 'event' ? addEvent(data) : drawProgress(data)), watching.signal).catch(() => {});
}

function addEvent(e) {
  $('#p-events').append(el('li', {}, el('time', { text: e.at.slice(11, 19) }), ` ${e.message}`));
}

function drawProgress(p) {
  $('#p-state').dataset.state = p.state;
  const sources = p.disks.map((d) => d.source).filter(Boolean);
  const lag = Math.max(0, ...sources.map((s) => s.lagSeconds));
  const pause = Math.max(0, ...sources.map((s) => (s.predictedPauseMs ?? 0) / 1000));
  const backlog = sources.reduce((n, s) => n + s.backlogBytes, 0);
  $('#p-togo').textContent = bytes(p.bytesToGo);
  $('#p-eta').textContent = seconds(p.etaSeconds);
  $('#p-lag').textContent = sources.length ? `${seconds(lag)}, ${bytes(backlog)}` : '-';
  $('#p-pause').textContent = sources.length ? seconds(pause) : '-';
  $('#p-mode').textContent = [...new Set(sources.map((s) => s.mode))].join(', ') || '-';
  $('#p-disks tbody').replaceChildren(
    ...p.disks.map((d) =>
      el(
        'tr',
        {},
        el('td', { text: d.vm }),
        el('td', { text: d.disk }),
        el('td', { text: d.manifestId ? 'done' : d.baseCopy ? `${Math.floor((100 * d.baseCopy.bytesDone) / Math.max(1, d.baseCopy.bytesTotal))}%` : '-' }),
        el('td', { text: d.source?.mode ?? '-' }),
        el('td', { text: seconds(d.source?.lagSeconds) }),
        el('td', { text: bytes(d.source?.backlogBytes) }),
        el('td', { text: d.replica ? `${d.replica.state}${d.replica.consistent ? ', consistent' : ''}` : '-' }),
      ),
    ),
  );
  history.t.push(Date.parse(p.at));
  history.toGo.push(p.bytesToGo);
  history.backlog.push(backlog);
  history.lag.push(lag);
  history.pause.push(pause);
  chart($('#chart-bytes'), [history.toGo, history.backlog], ['#2b6cb0', '#c05621'], bytes);
  chart($('#chart-lag'), [history.lag, history.pause], ['#2f855a', '#9b2c2c'], seconds);
  const cutting = p.state === 'cutting over';
  $('#cutover-now').hidden = !['validated', 'copying', 'replicating', 'ready'].includes(p.state);
  $('#cutover-go').hidden = !(cutting && p.cutover?.state === 'held');
  $('#cutover-cancel').hidden = !cutting;
  $('#migration-cancel').hidden = ['cutting over', 'done', 'failed', 'cancelled'].includes(p.state);
  const started = ['copying', 'replicating', 'ready'].includes(p.state);
  $('#pause').hidden = !started || p.paused;
  $('#resume').hidden = !started || !p.paused;
  $('#p-state').textContent = `${p.state}${p.paused ? ', paused' : ''}`;
  $('#seed-arrived').hidden = p.seed?.phase !== 'shipping';
  if (p.cutover) drawReport(p.cutover);
}

/** Lines of `series` (the last 300 points each) on a canvas, each scaled to its own maximum, which it labels. */
function chart(canvas, series, colors, format) {
  const g = canvas.getContext('2d');
  const { width, height } = canvas;
  g.clearRect(0, 0, width, height);
  g.strokeStyle = '#ddd';
  g.strokeRect(0.5, 0.5, width - 1, height - 1);
  series.forEach((values, i) => {
    const points = values.slice(-300);
    const max = Math.max(1e-9, ...points);
    g.strokeStyle = colors[i];
    g.lineWidth = 2;
    g.beginPath();
    points.forEach((v, j) => {
      const x = 4 + (j / Math.max(1, points.length - 1)) * (width - 8);
      const y = height - 4 - (v / max) * (height - 8);
      if (j === 0) g.moveTo(x, y);
      else g.lineTo(x, y);
    });
    g.stroke();
    g.fillStyle = colors[i];
    g.font = '12px system-ui, sans-serif';
    g.fillText(`max ${format(Math.max(0, ...points))}`, 8 + i * 120, 16);
  });
  canvas.dataset.points = String(series[0].length);
}

function drawReport(r) {
  $('#report').hidden = false;
  const row = (k, v) => el('tr', {}, el('th', { text: k }), el('td', { text: v }));
  const ms = (v) => (v === undefined ? '-' : `${Math.round(v)} ms`);
  $('#report tbody').replaceChildren(
    row('Cutover', `${r.id}: ${r.state}${r.error ? ` (${r.error})` : ''}`),
    row('Downtime to running', ms(r.maxDowntimeToRunningMs)),
    row('Downtime to healthy', ms(r.maxDowntimeToHealthyMs)),
    row('Final bytes', bytes(r.finalBytes)),
    ...r.vms.map((vm) => row(`VM ${vm.vm}`, `${vm.progress}; ${vm.disks.map((d) => `${d.disk} ${d.verified ?? 'not verified'}${d.fenced ? ', source fenced' : ''}`).join('; ')}`)),
  );
}

const current = () => $('#progress').dataset.id;
const act = (path, body) => api('POST', `/v1/migrations/${current()}/${path}`, body).catch((err) => alert(err.message));
$('#cutover-now').addEventListener('click', () => act('cutover', {}));
$('#cutover-go').addEventListener('click', () => act('cutover/go'));
$('#pause').addEventListener('click', () => act('pause'));
$('#seed-arrived').addEventListener('submit', (event) => {
  event.preventDefault();
  act('seed/arrived', { device: $('#seed-arrived').device.value.trim() });
});
$('#resume').addEventListener('click', () => act('resume'));
$('#cutover-cancel').addEventListener('click', () => act('cutover/cancel'));
$('#migration-cancel').addEventListener('click', () => confirm('Cancel this migration?') && act('cancel'));
$('#to-list').addEventListener('click', () => (location.hash = '#/'));

// Routing

async function route() {
  const hash = location.hash || '#/';
  $('#nav').replaceChildren(...(token ? [el('a', { href: '#/', text: 'Migrations' }), el('a', { href: '#/new', text: 'New migration' })] : []));
  if (!token || hash === '#/sign-in') return show('sign-in');
  if (!hash.startsWith('#/m/')) watching?.abort();
  try {
    if (hash === '#/new') await showWizard();
    else if (hash.startsWith('#/m/')) await showProgress(hash.slice(4));
    else await showList();
  } catch (err) {
    alert(err.message);
  }
}
window.addEventListener('hashchange', route);
route();
