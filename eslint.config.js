// Lint rules that encode docs/DESIGN.md's layering: who may import whom, that other
// folders are reached only through their index.ts, and that only the CLI touches the
// terminal, the environment and the process's exit.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** Folders under src/ and the folders each one may import (besides itself). */
const allowed = {
  core: [],
  nbd: ['core'],
  store: ['core'],
  delta: ['core', 'store'],
  seed: ['core', 'store'],
  cutover: ['core', 'store'],
  migrate: ['core', 'nbd', 'store', 'delta', 'seed', 'cutover'],
  api: ['core', 'nbd', 'store', 'delta', 'seed', 'cutover', 'migrate'],
  cli: ['core', 'nbd', 'store', 'delta', 'seed', 'cutover', 'migrate', 'api'],
};
const folders = Object.keys(allowed);

function layering(folder) {
  const forbidden = folders.filter((f) => f !== folder && !allowed[folder].includes(f));
  const patterns = [];
  if (forbidden.length > 0) {
    patterns.push({
      group: forbidden.flatMap((f) => [`../${f}`, `../${f}/*`, `../../${f}`, `../../${f}/*`, `../../../${f}/*`]),
      message: `src/${folder} may import only ${['itself', ...allowed[folder]].join(', ')} (see docs/DESIGN.md, "Rooms").`,
    });
  }
  const others = allowed[folder];
  if (others.length > 0) {
    patterns.push({
      group: others.flatMap((f) => [`../${f}/*`, `!../${f}/index.js`, `../../${f}/*`, `!../../${f}/index.js`]),
      message: 'Import another folder through its index.ts, its public face.',
    });
  }
  return {
    files: [`src/${folder}/**/*.ts`],
    rules: { 'no-restricted-imports': ['error', { patterns }] },
  };
}

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // Benchmark launchers are plain Node scripts.
    files: ['scripts/**/*.mjs'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', performance: 'readonly', URL: 'readonly', fetch: 'readonly' } },
  },
  ...folders.map(layering),
  {
    files: ['src/**/*.ts'],
    ignores: ['src/cli/**'],
    rules: {
      'no-console': 'error',
      'no-restricted-properties': [
        'error',
        { object: 'process', property: 'env', message: 'Only src/cli reads the environment; pass settings in.' },
        { object: 'process', property: 'exit', message: 'Only src/cli exits the process.' },
        { object: 'process', property: 'stdout', message: 'Only src/cli prints to the terminal.' },
        { object: 'process', property: 'stderr', message: 'Only src/cli prints to the terminal.' },
      ],
    },
  },
);
