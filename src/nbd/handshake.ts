/**
 * The fixed-newstyle handshake: greeting, client flags, then option haggling until the client
 * picks an export (NBD_OPT_GO or NBD_OPT_EXPORT_NAME) or leaves (NBD_OPT_ABORT). It is written
 * against a tiny byte-stream interface so it knows nothing of sockets; anything the client
 * sends that breaks a MUST of the protocol throws a ProtocolViolation, which closes the
 * connection and nothing else.
 */
import type { ExportTable, NbdExport } from './export-table.js';
import { maxNameBytes, transmissionFlags } from './export-table.js';
import {
  IHAVEOPT,
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_INFO_DESCRIPTION,
  NBD_INFO_NAME,
  NBD_OPT_ABORT,
  NBD_OPT_EXPORT_NAME,
  NBD_OPT_GO,
  NBD_OPT_INFO,
  NBD_OPT_LIST,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_REP_ACK,
  NBD_REP_ERR_INVALID,
  NBD_REP_ERR_POLICY,
  NBD_REP_ERR_UNKNOWN,
  NBD_REP_ERR_UNSUP,
  NBD_REP_INFO,
  NBD_REP_SERVER,
  encodeExportNameReply,
  encodeGreeting,
  encodeInfoBlockSize,
  encodeInfoExport,
  encodeInfoString,
  encodeOptionError,
  encodeOptionReply,
  encodeServerEntry,
} from './protocol.js';

/** The client broke the protocol; the connection is closed, with this as the logged reason. */
export class ProtocolViolation extends Error {
  override readonly name = 'ProtocolViolation';
}

/** The bytes of a connection, as the handshake sees them. */
export interface HandshakeIo {
  /** Resolves with exactly `n` bytes; rejects if the connection closes first. */
  read(n: number): Promise<Buffer>;
  write(data: Buffer): void;
}

export interface HandshakeLimits {
  /**
   * Option payloads above this are refused by closing the connection: the largest valid one
   * (NBD_OPT_GO with a 4096-byte name and a few info requests) is far smaller, and a server
   * that waited for gigabytes of option data would be easy to tie up.
   */
  maxOptionBytes: number;
  /** Options per connection; a client that haggles forever is cut off. */
  maxOptions: number;
}

export const defaultHandshakeLimits: HandshakeLimits = { maxOptionBytes: 64 * 1024, maxOptions: 1024 };

export interface Negotiated {
  export: NbdExport;
  structuredReplies: boolean;
}

/**
 * Runs the handshake. Returns the negotiated export, or null if the client ended haggling
 * with NBD_OPT_ABORT (the caller then closes the connection).
 */
export async function negotiate(io: HandshakeIo, exports: ExportTable, limits: HandshakeLimits = defaultHandshakeLimits): Promise<Negotiated | null> {
  io.write(encodeGreeting());
  const clientFlags = (await io.read(4)).readUInt32BE(0);
  if ((clientFlags & ~(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) !== 0) {
    throw new ProtocolViolation(`unknown client flags 0x${clientFlags.toString(16)}`);
  }
  const noZeroes = (clientFlags & NBD_FLAG_C_NO_ZEROES) !== 0;
  let structuredReplies = false;

  for (let count = 0; ; count++) {
    const header = await io.read(16);
    if (header.readBigUInt64BE(0) !== IHAVEOPT) throw new ProtocolViolation('bad option magic');
    if (count >= limits.maxOptions) throw new ProtocolViolation(`more than ${limits.maxOptions} options`);
    const option = header.readUInt32BE(8);
    const length = header.readUInt32BE(12);
    if (length > limits.maxOptionBytes) {
      throw new ProtocolViolation(`option ${option} carries ${length} bytes, more than the ${limits.maxOptionBytes} accepted`);
    }
    const data = length > 0 ? await io.read(length) : Buffer.alloc(0);
    const reply = (type: number, payload?: Uint8Array): void => io.write(encodeOptionReply(option, type, payload));
    const fail = (type: number, message: string): void => io.write(encodeOptionError(option, type, message));

    switch (option) {
      case NBD_OPT_EXPORT_NAME: {
        const name = data.toString('utf8');
        const exp = exports.lookup(name);
        // This option cannot carry an error, so the spec has the server hang up.
        if (exp === undefined) throw new ProtocolViolation(`NBD_OPT_EXPORT_NAME for unknown export ${JSON.stringify(name.slice(0, 64))}`);
        const refusal = exp.refusal();
        if (refusal !== undefined) throw new ProtocolViolation(`export ${JSON.stringify(exp.name)} refuses clients: ${refusal}`);
        io.write(encodeExportNameReply(exp.sizeBytes, transmissionFlags(exp, structuredReplies), noZeroes));
        return { export: exp, structuredReplies };
      }
      case NBD_OPT_ABORT:
        reply(NBD_REP_ACK);
        return null;
      case NBD_OPT_LIST:
        if (length !== 0) {
          fail(NBD_REP_ERR_INVALID, 'NBD_OPT_LIST takes no data');
          break;
        }
        for (const exp of exports.list()) reply(NBD_REP_SERVER, encodeServerEntry(exp.name, exp.description));
        reply(NBD_REP_ACK);
        break;
      case NBD_OPT_STRUCTURED_REPLY:
        if (length !== 0) fail(NBD_REP_ERR_INVALID, 'NBD_OPT_STRUCTURED_REPLY takes no data');
        else if (structuredReplies) fail(NBD_REP_ERR_INVALID, 'structured replies are already negotiated');
        else {
          structuredReplies = true;
          reply(NBD_REP_ACK);
        }
        break;
      case NBD_OPT_INFO:
      case NBD_OPT_GO: {
        const request = parseInfoRequest(data);
        if (typeof request === 'string') {
          fail(NBD_REP_ERR_INVALID, request);
          break;
        }
        const exp = exports.lookup(request.name);
        if (exp === undefined) {
          fail(NBD_REP_ERR_UNKNOWN, `no export named ${JSON.stringify(request.name.slice(0, 64))}`);
          break;
        }
        const refusal = exp.refusal();
        if (refusal !== undefined) {
          fail(NBD_REP_ERR_POLICY, refusal);
          break;
        }
        reply(NBD_REP_INFO, encodeInfoExport(exp.sizeBytes, transmissionFlags(exp, structuredReplies)));
        // Block sizes go out whether asked for or not (the spec allows it): clients that
        // honour them send nothing ferry would refuse.
        reply(NBD_REP_INFO, encodeInfoBlockSize(exp.minBlockBytes, exp.preferredBlockBytes, exp.maxBlockBytes));
        if (request.infos.includes(NBD_INFO_NAME)) reply(NBD_REP_INFO, encodeInfoString(NBD_INFO_NAME, exp.name));
        if (request.infos.includes(NBD_INFO_DESCRIPTION) && exp.description !== undefined) {
          reply(NBD_REP_INFO, encodeInfoString(NBD_INFO_DESCRIPTION, exp.description));
        }
        reply(NBD_REP_ACK);
        if (option === NBD_OPT_GO) return { export: exp, structuredReplies };
        break;
      }
      default:
        // Includes NBD_OPT_STARTTLS: ferry serves local sockets and offers no TLS.
        fail(NBD_REP_ERR_UNSUP, `option ${option} is not supported`);
    }
  }
}

/** NBD_OPT_INFO / NBD_OPT_GO data: name length, name, count of info requests, the requests. */
function parseInfoRequest(data: Buffer): { name: string; infos: number[] } | string {
  if (data.length < 6) return `option data too short (${data.length} bytes)`;
  const nameLength = data.readUInt32BE(0);
  if (nameLength > maxNameBytes) return `export name longer than ${maxNameBytes} bytes`;
  if (4 + nameLength + 2 > data.length) return 'export name runs past the option data';
  const count = data.readUInt16BE(4 + nameLength);
  if (data.length !== 4 + nameLength + 2 + 2 * count) return 'information request count does not match the option length';
  const infos: number[] = [];
  for (let i = 0; i < count; i++) infos.push(data.readUInt16BE(4 + nameLength + 2 + 2 * i));
  return { name: data.toString('utf8', 4, 4 + nameLength), infos };
}
