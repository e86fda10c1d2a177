/**
 * The web wizard: static files (HTML, JavaScript, CSS) from the repository's `web/wizard/`,
 * served as they are (no build step). The page itself needs no token; every API call it
 * makes sends the one the operator signs in with.
 *
 *   GET /                 the wizard (index.html)
 *   GET /wizard/:file     its script and style sheet
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { WizardApp } from './common.js';

/** `web/wizard/` from src/api/wizard/ and from dist/api/wizard/ alike. */
const pageDir = fileURLToPath(new URL('../../../web/wizard/', import.meta.url));

const files: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'wizard.js': 'text/javascript; charset=utf-8',
  'wizard.css': 'text/css; charset=utf-8',
};

export function pageRoutes(app: WizardApp): void {
  const serve = async (name: string) => {
    const body = await readFile(`${pageDir}${name}`);
    return new Response(body, { headers: { 'content-type': files[name]!, 'cache-control': 'no-cache', 'x-content-type-options': 'nosniff' } });
  };
  app.get('/', () => serve('index.html'));
  app.get('/wizard/:file', (c) => (files[c.req.param('file')] ? serve(c.req.param('file')) : c.json({ error: { code: 'not-found', message: `no file ${c.req.param('file')}` } }, 404)));
}
