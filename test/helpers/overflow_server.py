#!/usr/bin/env python3
"""A listener that never accepts, for the container tests: run inside a
container, it listens on 127.0.0.1:PORT with backlog 1 and, for each line
read on stdin, makes K connects to itself (the accept queue overflows),
then prints one JSON line. It ends when stdin closes.

With EVERY (seconds), it does a round that often instead, at most 600
rounds (a container the CRI started has no stdin to read), each on a new
listener: a full queue stays full, and only a queue filling up again makes
listener events that carry the socket's cgroup (SYN-stage drops may not).

usage: overflow_server.py PORT K [EVERY]
"""
import json
import socket
import sys
import time

port, k = int(sys.argv[1]), int(sys.argv[2])
every = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0


def listen():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(1)
    return s


srv = listen()
print(json.dumps({"listening": port}), flush=True)
clients = []


def rounds():
    if not every:
        yield from sys.stdin
        return
    for _ in range(600):
        yield ""
        time.sleep(every)


for _ in rounds():
    for c in clients:
        c.close()
    clients = []
    if every:
        srv.close()
        srv = listen()
    for _ in range(k):
        c = socket.socket()
        c.setblocking(False)
        try:
            c.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        clients.append(c)
    print(json.dumps({"connects": k}), flush=True)
