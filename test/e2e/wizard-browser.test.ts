/**
 * The web wizard in a real browser (playwright-core driving Debian's Chromium) against a
 * running service, two agents over TLS and a running guest on a real disk: a person signs
 * in, picks the VM from the source host's inventory, adds and checks a store, sets the
 * cutover, creates and starts the migration, watches its progress update live, and cuts it
 * over. Screenshots of every step go to test-results/wizard/ (kept by CI).
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { SiteHarness, expectMoved } from '../support/service-site.js';
import { testGuest } from '../support/test-guest.js';
import { tempDir } from '../support/temp.js';

const chromiumPath = '/usr/bin/chromium';
const shots = fileURLToPath(new URL('../../test-results/wizard/', import.meta.url));

let dir: Awaited<ReturnType<typeof tempDir>>;
let harness: SiteHarness;
let browser: Browser;

beforeAll(async () => {
  if (!existsSync(chromiumPath)) throw new Error(`the wizard's browser test needs Chromium at ${chromiumPath}: install Debian package chromium (scripts/setup-system does)`);
  dir = await tempDir('ferry-wizard-');
  harness = new SiteHarness(dir.path, await testGuest());
  await mkdir(shots, { recursive: true });
  // As root (CI), Chromium runs only without its sandbox.
  browser = await chromium.launch({ executablePath: chromiumPath, args: ['--no-sandbox'] });
});
afterEach(async () => {
  await harness.stop();
});
afterAll(async () => {
  await browser?.close();
  await dir?.cleanup();
});

let shot = 0;
async function screenshot(page: Page, name: string): Promise<void> {
  shot++;
  await page.screenshot({ path: join(shots, `${String(shot).padStart(2, '0')}-${name}.png`), fullPage: true });
}

it('walks a person through a migration: sign in, pick the VM, store, cutover, live progress, cut over', async () => {
  const disks = ['w0'];
  const s = await harness.site('browser', disks);
  const host = (name: string, role: string, agent: typeof s.source) => s.call('POST', '/v1/hosts', { name, role, agent: { url: agent.url, fingerprint: agent.fingerprint, token: agent.token } });
  // The source host's inventory is what its agent reports (--vm db=w0).
  const added = await host('site-a', 'source', s.source);
  expect(added).toMatchObject({ status: 201, body: { inventory: { vms: [{ name: 'db', disks: [{ id: 'w0', sizeBytes: 8 << 20 }] }] } } });
  const destinationHost = await host('site-b', 'destination', s.destination);
  expect(destinationHost.status).toBe(201);
  const sides = harness.sides(s, disks);

  const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  const problems: string[] = [];
  page.on('pageerror', (err) => problems.push(err.message));
  page.on('dialog', (dialog) => (problems.push(`dialog: ${dialog.message()}`), void dialog.dismiss()));

  await page.goto(s.service.url);
  await page.locator('#sign-in').waitFor();
  await page.fill('#token', 'ferry_not-a-token-of-this-service-at-all-00000');
  await page.click('#sign-in-form button');
  await expect.poll(() => page.textContent('#sign-in-error')).toMatch(/not one of this service's tokens/);
  await page.fill('#token', s.token);
  await page.click('#sign-in-form button');
  await page.locator('#list').waitFor();
  await screenshot(page, 'signed-in');

  await page.click('#new-migration');
  await page.locator('form[data-step=Hosts]').waitFor();
  await page.fill('input[name=name]', 'from-the-browser');
  // The service's own agent ("local") is a host too: pick the two sites.
  await page.selectOption('select[name=sourceHost]', (added.body as { id: string }).id);
  await page.selectOption('select[name=destinationHost]', (destinationHost.body as { id: string }).id);
  await screenshot(page, 'hosts');
  await page.click('#next');

  const vm = page.locator('fieldset.vm[data-vm=db]');
  await vm.waitFor();
  await vm.locator('input[name=qmp]').fill(sides.source.qmp);
  await vm.locator('input[name=runDir]').fill(sides.destination.runDir);
  await vm.locator('input[name=kernel]').fill(sides.destination.launch.kernel);
  await vm.locator('input[name=initrd]').fill(sides.destination.launch.initrd);
  await vm.locator('input[name=append]').fill(sides.destination.launch.append);
  await vm.locator('input[name=console]').fill(sides.health.console);
  await screenshot(page, 'vms');
  await page.click('#next');

  await page.fill('input[name=storeName]', 'shared');
  await page.fill('input[name=storeUrl]', s.store);
  await page.click('#add-store');
  await expect.poll(() => page.textContent('#store-check')).toMatch(/ferry repository/);
  await screenshot(page, 'store');
  await page.click('#next');
  await page.click('#next'); // throttle: the defaults

  await page.fill('input[name=budget]', '10s');
  await page.fill('input[name=window]', '3m');
  await page.selectOption('select[name=verify]', 'full');
  await page.click('#next');
  expect(JSON.parse((await page.textContent('#review'))!)).toMatchObject({ name: 'from-the-browser', vms: [{ name: 'db', disks: [{ id: 'w0' }] }], cutover: { budget: '10s', verify: 'full' } });
  await screenshot(page, 'review');
  await page.click('#create');

  // The progress view: it updates live until the replica is ready.
  await page.waitForURL(/#\/m\/mig-/);
  const id = /#\/m\/(mig-\w+)/.exec(page.url())![1]!;
  await expect.poll(() => page.textContent('#p-state'), { timeout: 120_000 }).toBe('ready');
  const points = async () => Number(await page.getAttribute('#chart-lag', 'data-points'));
  const before = await points();
  await expect.poll(points, { timeout: 10_000 }).toBeGreaterThan(before);
  expect(await page.locator('#p-disks tbody tr').count()).toBe(1);
  expect(await page.textContent('#p-disks tbody tr')).toMatch(/dbw0donestreaming.*following, consistent/);
  expect(await page.textContent('#p-events')).toMatch(/base copy of db\/w0 done/);
  await screenshot(page, 'ready');

  await page.click('#cutover-now');
  await expect.poll(() => page.textContent('#p-state'), { timeout: 180_000 }).toBe('done');
  await expect.poll(() => page.textContent('#report')).toMatch(/healthy/);
  expect(await page.textContent('#report')).toMatch(/w0 full, source fenced/);
  await screenshot(page, 'done');
  expect(problems).toEqual([]);

  await expectMoved(s, id, disks);
});
