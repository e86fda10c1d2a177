// The migration service's wizard API (`ferry serve`): the app and its HTTP listener.
export { openApiPath, wizardApp, type WizardAppOptions } from './app.js';
export type { WizardApp } from './common.js';
export { serveWizardApi, type WizardHttpServer } from './http-server.js';
