#!/usr/bin/python3
# Latency at queue depth 1, what a VM with a sync workload (a database, a journal) feels:
# 4 KiB writes with FUA, and 4 KiB writes each followed by FLUSH, one request at a time, at
# seeded random 4 KiB-aligned offsets. Prints one JSON line with p50 and p99 in microseconds.
#
#   python3 scripts/bench/lib/qd1-latency.py URI SIZE_BYTES [COUNT]
import json
import random
import sys
import time

import nbd

uri, size = sys.argv[1], int(sys.argv[2])
count = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
h = nbd.NBD()
h.connect_uri(uri)
block = bytes(random.Random(1).getrandbits(8) for _ in range(4096))
offsets = random.Random(7)


def measure(op):
    samples = []
    for _ in range(count):
        offset = offsets.randrange(size // 4096) * 4096
        start = time.perf_counter_ns()
        op(offset)
        samples.append((time.perf_counter_ns() - start) / 1000)
    samples.sort()
    return {"p50": round(samples[len(samples) // 2]), "p99": round(samples[int(len(samples) * 0.99)])}


def write_fua(offset):
    h.pwrite(block, offset, nbd.CMD_FLAG_FUA)


def write_flush(offset):
    h.pwrite(block, offset)
    h.flush()


measure(write_fua)  # warm-up, untimed
print(json.dumps({"fua": measure(write_fua), "flush": measure(write_flush)}))
h.shutdown()
