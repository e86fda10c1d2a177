// Benchmark hook for scripts/bench/nbd-serve.mjs: a disk that forgets every write. Reads go
// to the image; writes, zeroes, trims and flushes return at once without touching anything.
// It measures what ferry's NBD server costs by itself (sockets, parsing, replies), the floor
// under any filter stack behind it:
//
//   scripts/bench/nbd --hook scripts/bench/lib/null-hook.mjs --servers "ferry-capture nbdkit"
//
// (the "ferry+hook" column is then this device). Not for data: what is written is lost.
const done = Promise.resolve();

export default async function nullHook(disk) {
  return {
    sizeBytes: disk.sizeBytes,
    readOnly: disk.readOnly,
    read: (buf, offset) => disk.read(buf, offset),
    write: () => done,
    writeZeroes: () => done,
    trim: () => done,
    flush: () => done,
    close: () => done,
  };
}
