/**
 * NBD wire constants and the small codecs for the messages ferry's server sends.
 * Numbers follow the protocol document (NetworkBlockDevice/nbd, doc/proto.md); every field is
 * big-endian. Encoders return one Buffer per message so a reply goes out in one socket write.
 */

// Handshake magics.
export const NBDMAGIC = 0x4e42444d41474943n;
export const IHAVEOPT = 0x49484156454f5054n;
export const OPTION_REPLY_MAGIC = 0x3e889045565a9n;

// Handshake flags (server) and client flags.
export const NBD_FLAG_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_NO_ZEROES = 1 << 1;
export const NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_C_NO_ZEROES = 1 << 1;

// Options.
export const NBD_OPT_EXPORT_NAME = 1;
export const NBD_OPT_ABORT = 2;
export const NBD_OPT_LIST = 3;
export const NBD_OPT_STARTTLS = 5;
export const NBD_OPT_INFO = 6;
export const NBD_OPT_GO = 7;
export const NBD_OPT_STRUCTURED_REPLY = 8;

// Option replies; errors have bit 31 set.
export const NBD_REP_ACK = 1;
export const NBD_REP_SERVER = 2;
export const NBD_REP_INFO = 3;
const REP_ERR = 2 ** 31;
export const NBD_REP_ERR_UNSUP = REP_ERR + 1;
export const NBD_REP_ERR_POLICY = REP_ERR + 2;
export const NBD_REP_ERR_INVALID = REP_ERR + 3;
export const NBD_REP_ERR_UNKNOWN = REP_ERR + 6;
export const NBD_REP_ERR_SHUTDOWN = REP_ERR + 7;
export const NBD_REP_ERR_TOO_BIG = REP_ERR + 9;

// Information types in NBD_REP_INFO (answers to NBD_OPT_INFO / NBD_OPT_GO).
export const NBD_INFO_EXPORT = 0;
export const NBD_INFO_NAME = 1;
export const NBD_INFO_DESCRIPTION = 2;
export const NBD_INFO_BLOCK_SIZE = 3;

// Transmission flags.
export const NBD_FLAG_HAS_FLAGS = 1 << 0;
export const NBD_FLAG_READ_ONLY = 1 << 1;
export const NBD_FLAG_SEND_FLUSH = 1 << 2;
export const NBD_FLAG_SEND_FUA = 1 << 3;
export const NBD_FLAG_SEND_TRIM = 1 << 5;
export const NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6;
export const NBD_FLAG_SEND_DF = 1 << 7;
export const NBD_FLAG_CAN_MULTI_CONN = 1 << 8;

// Transmission phase.
export const NBD_REQUEST_MAGIC = 0x25609513;
export const NBD_SIMPLE_REPLY_MAGIC = 0x67446698;
export const NBD_STRUCTURED_REPLY_MAGIC = 0x668e33ef;
export const requestHeaderBytes = 28;
export const simpleReplyHeaderBytes = 16;
export const structuredReplyHeaderBytes = 20;
/** A structured OFFSET_DATA chunk: its header plus the 64-bit offset before the data. */
export const offsetDataPrefixBytes = structuredReplyHeaderBytes + 8;

export const NBD_CMD_READ = 0;
export const NBD_CMD_WRITE = 1;
export const NBD_CMD_DISC = 2;
export const NBD_CMD_FLUSH = 3;
export const NBD_CMD_TRIM = 4;
export const NBD_CMD_WRITE_ZEROES = 6;

export const NBD_CMD_FLAG_FUA = 1 << 0;
export const NBD_CMD_FLAG_NO_HOLE = 1 << 1;
export const NBD_CMD_FLAG_DF = 1 << 2;

export const NBD_REPLY_FLAG_DONE = 1 << 0;
export const NBD_REPLY_TYPE_NONE = 0;
export const NBD_REPLY_TYPE_OFFSET_DATA = 1;
export const NBD_REPLY_TYPE_ERROR = 2 ** 15 + 1;

// The protocol's error values (not the host's errno numbers, though they agree on Linux).
export const NBD_EPERM = 1;
export const NBD_EIO = 5;
export const NBD_ENOMEM = 12;
export const NBD_EINVAL = 22;
export const NBD_ENOSPC = 28;
export const NBD_EOVERFLOW = 75;
export const NBD_ENOTSUP = 95;
export const NBD_ESHUTDOWN = 108;

/** Names for logs and error messages. */
export const commandNames: Readonly<Record<number, string>> = {
  [NBD_CMD_READ]: 'read',
  [NBD_CMD_WRITE]: 'write',
  [NBD_CMD_DISC]: 'disc',
  [NBD_CMD_FLUSH]: 'flush',
  [NBD_CMD_TRIM]: 'trim',
  [NBD_CMD_WRITE_ZEROES]: 'write-zeroes',
};

/** The server's first 18 bytes: NBDMAGIC, IHAVEOPT, handshake flags. */
export function encodeGreeting(): Buffer {
  const buf = Buffer.allocUnsafe(18);
  buf.writeBigUInt64BE(NBDMAGIC, 0);
  buf.writeBigUInt64BE(IHAVEOPT, 8);
  buf.writeUInt16BE(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES, 16);
  return buf;
}

/** One fixed-newstyle option reply with its optional payload. */
export function encodeOptionReply(option: number, replyType: number, data?: Uint8Array): Buffer {
  const length = data?.byteLength ?? 0;
  const buf = Buffer.allocUnsafe(20 + length);
  buf.writeBigUInt64BE(OPTION_REPLY_MAGIC, 0);
  buf.writeUInt32BE(option >>> 0, 8);
  buf.writeUInt32BE(replyType >>> 0, 12);
  buf.writeUInt32BE(length, 16);
  if (data) buf.set(data, 20);
  return buf;
}

/** An option error reply carrying a human-readable message, as the spec allows. */
export function encodeOptionError(option: number, replyType: number, message: string): Buffer {
  return encodeOptionReply(option, replyType, Buffer.from(message.slice(0, 1024), 'utf8'));
}

export function encodeInfoExport(sizeBytes: number, transmissionFlags: number): Buffer {
  const buf = Buffer.allocUnsafe(12);
  buf.writeUInt16BE(NBD_INFO_EXPORT, 0);
  buf.writeBigUInt64BE(BigInt(sizeBytes), 2);
  buf.writeUInt16BE(transmissionFlags, 10);
  return buf;
}

export function encodeInfoBlockSize(minimum: number, preferred: number, maximum: number): Buffer {
  const buf = Buffer.allocUnsafe(14);
  buf.writeUInt16BE(NBD_INFO_BLOCK_SIZE, 0);
  buf.writeUInt32BE(minimum, 2);
  buf.writeUInt32BE(preferred, 6);
  buf.writeUInt32BE(maximum, 10);
  return buf;
}

/** NBD_INFO_NAME or NBD_INFO_DESCRIPTION: a type followed by a string. */
export function encodeInfoString(infoType: number, text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  const buf = Buffer.allocUnsafe(2 + bytes.length);
  buf.writeUInt16BE(infoType, 0);
  bytes.copy(buf, 2);
  return buf;
}

/** NBD_REP_SERVER payload for NBD_OPT_LIST: name length, name, then optional description. */
export function encodeServerEntry(name: string, description?: string): Buffer {
  const nameBytes = Buffer.from(name, 'utf8');
  const descBytes = Buffer.from(description ?? '', 'utf8');
  const buf = Buffer.allocUnsafe(4 + nameBytes.length + descBytes.length);
  buf.writeUInt32BE(nameBytes.length, 0);
  nameBytes.copy(buf, 4);
  descBytes.copy(buf, 4 + nameBytes.length);
  return buf;
}

/** The answer to NBD_OPT_EXPORT_NAME: size, flags and (unless NO_ZEROES) 124 zero bytes. */
export function encodeExportNameReply(sizeBytes: number, transmissionFlags: number, noZeroes: boolean): Buffer {
  const buf = Buffer.alloc(noZeroes ? 10 : 134);
  buf.writeBigUInt64BE(BigInt(sizeBytes), 0);
  buf.writeUInt16BE(transmissionFlags, 8);
  return buf;
}

/**
 * Writes a simple reply header at the start of `buf`. The cookie (the client's "handle") is
 * carried as two 32-bit halves so the hot path never allocates a BigInt.
 */
export function writeSimpleReplyHeader(buf: Buffer, error: number, cookieHi: number, cookieLo: number): void {
  buf.writeUInt32BE(NBD_SIMPLE_REPLY_MAGIC, 0);
  buf.writeUInt32BE(error, 4);
  buf.writeUInt32BE(cookieHi, 8);
  buf.writeUInt32BE(cookieLo, 12);
}

/** Writes a structured reply chunk header at `at`. */
export function writeStructuredReplyHeader(
  buf: Buffer,
  at: number,
  flags: number,
  type: number,
  cookieHi: number,
  cookieLo: number,
  length: number,
): void {
  buf.writeUInt32BE(NBD_STRUCTURED_REPLY_MAGIC, at);
  buf.writeUInt16BE(flags, at + 4);
  buf.writeUInt16BE(type, at + 6);
  buf.writeUInt32BE(cookieHi, at + 8);
  buf.writeUInt32BE(cookieLo, at + 12);
  buf.writeUInt32BE(length, at + 16);
}

/** A final NBD_REPLY_TYPE_ERROR chunk with a message for the human at the other end. */
export function encodeStructuredError(error: number, message: string, cookieHi: number, cookieLo: number): Buffer {
  const text = Buffer.from(message.slice(0, 256), 'utf8');
  const buf = Buffer.allocUnsafe(structuredReplyHeaderBytes + 6 + text.length);
  writeStructuredReplyHeader(buf, 0, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, cookieHi, cookieLo, 6 + text.length);
  buf.writeUInt32BE(error, structuredReplyHeaderBytes);
  buf.writeUInt16BE(text.length, structuredReplyHeaderBytes + 4);
  text.copy(buf, structuredReplyHeaderBytes + 6);
  return buf;
}
