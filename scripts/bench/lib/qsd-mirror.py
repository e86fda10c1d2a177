#!/usr/bin/python3
# For scripts/bench/nbd's "qsd-mirror" peer: over qemu-storage-daemon's QMP socket, starts
# QEMU's active mirror of node "src" to node "dst" (blockdev-mirror, sync full,
# copy-mode write-blocking: from then on every write waits for both images) and returns once
# the initial copy is done and the job is ready.
#
#   python3 scripts/bench/lib/qsd-mirror.py QMP_SOCKET
import json
import socket
import sys
import time

sock = socket.socket(socket.AF_UNIX)
for _ in range(100):
    try:
        sock.connect(sys.argv[1])
        break
    except OSError:
        time.sleep(0.05)
stream = sock.makefile("rw")


def command(name, **arguments):
    stream.write(json.dumps({"execute": name, "arguments": arguments}) + "\n")
    stream.flush()
    while True:
        reply = json.loads(stream.readline())
        if "return" in reply:
            return reply["return"]
        if "error" in reply:
            sys.exit(f"qsd-mirror: {name}: {reply['error']['desc']}")


json.loads(stream.readline())  # the greeting
command("qmp_capabilities")
command("blockdev-mirror", **{"job-id": "mirror", "device": "src", "target": "dst", "sync": "full", "copy-mode": "write-blocking"})
for _ in range(6000):
    jobs = command("query-block-jobs")
    if jobs and jobs[0]["ready"]:
        sys.exit(0)
    time.sleep(0.05)
sys.exit("qsd-mirror: the mirror did not become ready")
