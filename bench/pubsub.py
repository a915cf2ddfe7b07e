#!/usr/bin/env python3
"""PUBLISH throughput to 1, 10 and 100 subscribers: shardd against Debian's redis-server, in
the same run.

Starts redis-server and shardd (io-threads 1, and io-threads 2 with the subscribers spread over
both proxies so messages cross between them) on free ports, then for each subscriber count:
a subscriber process holds the connections and reads everything that arrives; a publisher
sends pipelined PUBLISH commands (batches of --batch) for --seconds and checks each reply
counts every subscriber. Reported: PUBLISH/s, messages delivered/s, and whether every
subscriber got every message. Servers run in turn, each with the same workload.

Usage: python3 bench/pubsub.py [--seconds S] [--batch N] [--size BYTES] [--subscribers 1,10,100]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REDIS_SERVER = "/usr/bin/redis-server"


def encode(*args: bytes) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        out.append(b"$%d\r\n%b\r\n" % (len(a), a))
    return b"".join(out)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start(cmd: list[str], port: int, env=None) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        if answers(port):
            return proc
        time.sleep(0.05)
    stop(proc)
    raise RuntimeError(f"{cmd[0]} did not start")


def stop(proc: subprocess.Popen) -> None:
    """Our own server process group, by its PID."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def call(sock: socket.socket, *args: bytes) -> bytes:
    sock.sendall(encode(*args))
    return sock.recv(65536)


def subscriber_process(port: int, n: int, channel: bytes, proxies: int, ready, done, result) -> None:
    """Hold n subscriptions (spread evenly over the proxies) and count the bytes that arrive."""
    socks = []
    per_proxy = {p: 0 for p in range(proxies)}
    spare = []
    while len(socks) < n:
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        if proxies > 1:
            cid = int(call(s, b"CLIENT", b"ID")[1:-2])
            p = (cid - 1) % proxies
            if per_proxy[p] >= (n + proxies - 1) // proxies:
                spare.append(s)
                continue
            per_proxy[p] += 1
        s.sendall(encode(b"SUBSCRIBE", channel))
        s.recv(4096)
        s.setblocking(False)
        socks.append(s)
    for s in spare:
        s.close()
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    received = [0] * len(socks)
    index = {s.fileno(): i for i, s in enumerate(socks)}
    ready.set()
    quiet_since = None
    while True:
        events = sel.select(0.2)
        for key, _ in events:
            try:
                data = key.fileobj.recv(1 << 20)
            except BlockingIOError:
                continue
            received[index[key.fd]] += len(data)
        if done.is_set():
            if events:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > 0.5:
                break
    result.put(received)
    for s in socks:
        s.close()


def publish_for(port: int, seconds: float, batch: int, payload: bytes, channel: bytes, expect: int) -> tuple[int, float, int]:
    """Pipelined PUBLISH for `seconds`; (publishes, elapsed, replies not counting everyone)."""
    s = socket.create_connection(("127.0.0.1", port))
    request = encode(b"PUBLISH", channel, payload) * batch
    want = b":%d\r\n" % expect
    sent = wrong = 0
    start = time.perf_counter()
    deadline = start + seconds
    buf = b""
    while time.perf_counter() < deadline:
        s.sendall(request)
        got = 0
        while got < batch:
            buf += s.recv(1 << 20)
            lines = buf.split(b"\r\n")
            buf = lines.pop()
            for line in lines:
                got += 1
                if line + b"\r\n" != want:
                    wrong += 1
        sent += batch
    elapsed = time.perf_counter() - start
    s.close()
    return sent, elapsed, wrong


def run_case(port: int, n: int, args, proxies: int) -> dict:
    channel = b"bench-%d" % n
    payload = b"x" * args.size
    ready, done, result = mp.Event(), mp.Event(), mp.Queue()
    sub = mp.Process(target=subscriber_process, args=(port, n, channel, proxies, ready, done, result))
    sub.start()
    ready.wait(60)
    time.sleep(0.2)
    sent, elapsed, wrong = publish_for(port, args.seconds, args.batch, payload, channel, n)
    done.set()
    received = result.get(timeout=120)
    sub.join(30)
    message = len(b"*3\r\n$7\r\nmessage\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n" % (len(channel), channel, len(payload), payload))
    complete = all(r == sent * message for r in received)
    return {"publish_per_s": sent / elapsed, "delivered_per_s": sent * n / elapsed, "complete": complete,
            "wrong_counts": wrong}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--size", type=int, default=16, help="message payload bytes")
    parser.add_argument("--subscribers", default="1,10,100")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    counts = [int(x) for x in args.subscribers.split(",")]
    workdir = tempfile.mkdtemp(prefix="shardd-bench-pubsub-")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    servers = []
    if os.path.exists(REDIS_SERVER):
        servers.append(("redis-server", lambda p: [REDIS_SERVER, "--port", str(p), "--bind", "127.0.0.1",
                                                   "--save", "", "--appendonly", "no", "--dir", workdir], 1))
    for proxies in (1, 2):
        servers.append((f"shardd io-threads {proxies}",
                        lambda p, k=proxies: [sys.executable, "-m", "shardd", "--port", str(p), "--bind", "127.0.0.1",
                                              "--save", "", "--dir", workdir, "--worker-processes", str(args.workers),
                                              "--io-threads", str(k)], proxies))
    rows = []
    try:
        for name, command, proxies in servers:
            port = free_port()
            proc = start(command(port), port, env)
            try:
                for n in counts:
                    r = run_case(port, n, args, proxies)
                    rows.append((name, n, r))
                    print(f"{name:22} {n:4} subscribers: {r['publish_per_s']:10.0f} PUBLISH/s "
                          f"{r['delivered_per_s']:11.0f} messages/s  complete={r['complete']} "
                          f"wrong-counts={r['wrong_counts']}", file=sys.stderr, flush=True)
            finally:
                stop(proc)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nPUBLISH of {args.size}-byte messages, pipelined {args.batch} at a time, {args.seconds:g} s per case "
          f"(shardd: {args.workers} workers)\n")
    print("| server | subscribers | PUBLISH/s | messages delivered/s | all delivered |")
    print("|---|---:|---:|---:|---|")
    for name, n, r in rows:
        print(f"| {name} | {n} | {r['publish_per_s']:.0f} | {r['delivered_per_s']:.0f} | "
              f"{'yes' if r['complete'] and not r['wrong_counts'] else 'NO'} |")
    return 0 if all(r["complete"] and not r["wrong_counts"] for _, _, r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
