// The public face of src/api: the filter's control interface (server and client).
export { filterControlApp } from './filter-control.js';
export { FilterControlClient, type ControlTlsOptions, type DiskHash, type FilterDiskList } from './filter-control-client.js';
export { serveOnUnixSocket, type FetchHandler, type UnixHttpServer } from './unix-http.js';
export { hashToken, requireBearerToken, serveOverTls, type TlsHttpOptions, type TlsHttpServer } from './tls-http.js';
export { agentCertFile, agentKeyFile, certificateFingerprint, loadOrCreateTlsIdentity, loadTlsIdentity, normalizeFingerprint, type TlsIdentity } from './tls-cert.js';
export { WizardClient } from './wizard-client.js';
export { errorFromResponse, errorResponse, httpStatusFor, type ErrorBody } from './http-errors.js';
// The migration service's wizard API, loaded only by `ferry serve`: zod and its OpenAPI
// generator would slow every other command's start.
export const loadWizardApi = () => import('./wizard/index.js');
export type { WizardApp, WizardAppOptions, WizardHttpServer } from './wizard/index.js';
