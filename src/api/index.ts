// The public face of src/api: the filter's control interface (server and client).
export { filterControlApp } from './filter-control.js';
export { FilterControlClient, type DiskHash, type FilterDiskList } from './filter-control-client.js';
export { serveOnUnixSocket, type FetchHandler, type UnixHttpServer } from './unix-http.js';
export { errorFromResponse, errorResponse, httpStatusFor, type ErrorBody } from './http-errors.js';
