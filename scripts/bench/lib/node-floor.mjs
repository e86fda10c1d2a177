#!/usr/bin/env node
// The least a Node.js NBD server can cost: a peer for scripts/bench/nbd that shows what any
// server written in Node pays before it does anything of its own. It negotiates the fixed
// newstyle handshake (NBD_OPT_GO, no structured replies), then serves each request
// synchronously on the event loop as it is parsed out of the received chunks: WRITE is one
// pwrite(v) of the payload where it lies, READ one pread, FLUSH and FUA one fdatasync; the
// replies of one received chunk leave in one corked write. No capture, no limits, no checks
// beyond what framing needs: not a server to use, only a floor to measure against.
//
//   node scripts/bench/lib/node-floor.mjs --image disk.img --socket /tmp/nbd.sock
import { createServer } from 'node:net';
import { fdatasyncSync, fstatSync, openSync, readSync, writeSync, writevSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { image: { type: 'string' }, socket: { type: 'string' } } });
if (!values.image || !values.socket) {
  process.stderr.write('usage: node-floor.mjs --image PATH --socket PATH\n');
  process.exit(2);
}
const fd = openSync(values.image, 'r+');
const sizeBytes = BigInt(fstatSync(fd).size);

const OPT_EXPORT_NAME = 1, OPT_ABORT = 2, OPT_INFO = 6, OPT_GO = 7;
const REP_ACK = 1, REP_INFO = 3, REP_ERR_UNSUP = 0x80000001;
const CMD_READ = 0, CMD_WRITE = 1, CMD_DISC = 2, CMD_FLUSH = 3, CMD_FLAG_FUA = 1;
const FLAGS_HAS_FLAGS = 1, FLAGS_SEND_FLUSH = 4, FLAGS_SEND_FUA = 8;
const EINVAL = 22;

createServer((socket) => {
  socket.setNoDelay(true);
  const chunks = [];
  let offset = 0; // into chunks[0]
  let length = 0;
  let phase = 'flags'; // then 'options', then 'transmission'

  /** The next n bytes, without consuming them: a view where they lie in one chunk, else a copy. */
  const peek = (n) => {
    if (chunks[0].length - offset >= n) return chunks[0].subarray(offset, offset + n);
    const out = Buffer.allocUnsafe(n);
    let at = offset, i = 0, copied = 0;
    while (copied < n) {
      const count = Math.min(n - copied, chunks[i].length - at);
      chunks[i].copy(out, copied, at, at + count);
      copied += count;
      i++;
      at = 0;
    }
    return out;
  };
  /** Consumes n bytes as views of the chunks they lie in. */
  const take = (n) => {
    const pieces = [];
    length -= n;
    while (n > 0) {
      const first = chunks[0];
      const count = Math.min(n, first.length - offset);
      pieces.push(first.subarray(offset, offset + count));
      offset += count;
      n -= count;
      if (offset === first.length) {
        chunks.shift();
        offset = 0;
      }
    }
    return pieces;
  };
  const optionReply = (option, type, data = Buffer.alloc(0)) => {
    const header = Buffer.alloc(20);
    header.writeBigUInt64BE(0x3e889045565a9n, 0);
    header.writeUInt32BE(option, 8);
    header.writeUInt32BE(type, 12);
    header.writeUInt32BE(data.length, 16);
    socket.write(Buffer.concat([header, data]));
  };
  const reply = (cookie, error) => {
    const out = Buffer.allocUnsafe(16);
    out.writeUInt32BE(0x67446698, 0);
    out.writeUInt32BE(error, 4);
    cookie.copy(out, 8);
    socket.write(out);
  };

  const negotiate = () => {
    if (phase === 'flags') {
      if (length < 4) return;
      take(4);
      phase = 'options';
    }
    while (phase === 'options' && length >= 16) {
      const header = peek(16);
      const option = header.readUInt32BE(8);
      const dataBytes = header.readUInt32BE(12);
      if (length < 16 + dataBytes) return;
      take(16 + dataBytes);
      if (option === OPT_GO || option === OPT_INFO) {
        const info = Buffer.alloc(12);
        info.writeBigUInt64BE(sizeBytes, 2);
        info.writeUInt16BE(FLAGS_HAS_FLAGS | FLAGS_SEND_FLUSH | FLAGS_SEND_FUA, 10);
        optionReply(option, REP_INFO, info);
        optionReply(option, REP_ACK);
        if (option === OPT_GO) phase = 'transmission';
      } else if (option === OPT_ABORT || option === OPT_EXPORT_NAME) {
        socket.end();
        phase = 'closed';
      } else {
        optionReply(option, REP_ERR_UNSUP);
      }
    }
  };

  const serve = () => {
    while (length >= 28) {
      const header = peek(28);
      const flags = header.readUInt16BE(4);
      const type = header.readUInt16BE(6);
      const cookie = header.subarray(8, 16);
      const at = Number(header.readBigUInt64BE(16));
      const bytes = header.readUInt32BE(24);
      if (type === CMD_WRITE) {
        if (length < 28 + bytes) return;
        take(28);
        const payload = take(bytes);
        if (payload.length === 1) writeSync(fd, payload[0], 0, bytes, at);
        else writevSync(fd, payload, at);
        if (flags & CMD_FLAG_FUA) fdatasyncSync(fd);
        reply(cookie, 0);
      } else if (type === CMD_READ) {
        take(28);
        const data = Buffer.allocUnsafe(bytes);
        readSync(fd, data, 0, bytes, at);
        reply(cookie, 0);
        socket.write(data);
      } else if (type === CMD_FLUSH) {
        take(28);
        fdatasyncSync(fd);
        reply(cookie, 0);
      } else if (type === CMD_DISC) {
        socket.end();
        phase = 'closed';
        return;
      } else {
        take(28);
        reply(cookie, EINVAL);
      }
    }
  };

  socket.write(Buffer.concat([Buffer.from('NBDMAGICIHAVEOPT'), Buffer.from([0, 3])]));
  socket.on('data', (chunk) => {
    if (phase === 'closed') return;
    chunks.push(chunk);
    length += chunk.length;
    if (phase !== 'transmission') negotiate();
    if (phase !== 'transmission') return;
    socket.cork();
    serve();
    socket.uncork();
  });
  socket.on('error', () => {});
}).listen(values.socket);
