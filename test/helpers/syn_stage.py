#!/usr/bin/env python3
"""Handshakes held half-way, for the SYN-stage tests, run inside a test
network namespace (its own iptables rules and sysctls; nothing outside it).

An iptables rule in the namespace drops every segment to the listener's port
except SYNs, so final ACKs (and data) never arrive while it is in place: the
server keeps requests and retransmits its SYN-ACKs, or (with cookies) keeps
nothing and waits for an ACK that comes only when the rule is lifted. Every
mode is bounded in count and time, removes its rule, and prints one JSON line.
"""
import json
import select
import socket
import subprocess
import sys
import time

from traffic import HOST, abort, listener


def rule(action, port):
    subprocess.run(
        ["iptables", "-w", action, "OUTPUT", "-p", "tcp", "--dport", str(port), "--tcp-flags", "SYN", "NONE", "-j", "DROP"],
        check=True,
    )


def connects(port, k):
    """k non-blocking connects, 10 ms apart (each SYN is answered before the next)."""
    clients = []
    for _ in range(k):
        c = socket.socket()
        c.setblocking(False)
        try:
            c.connect((HOST, port))
        except BlockingIOError:
            pass
        clients.append(c)
        time.sleep(0.01)
    return clients


def held_acks(port, backlog, k, hold):
    """k handshakes whose final ACK never arrives, for `hold` seconds: the
    requests fill the SYN queue (past which SYNs are dropped, or answered with
    cookies) and each is resent a SYN-ACK on the server's timer."""
    rule("-A", port)
    try:
        srv = listener(port, backlog)
        clients = connects(port, k)
        time.sleep(hold)
        srv.close()
        for c in clients:
            c.close()
    finally:
        rule("-D", port)
    return {"connects": k}


def cookie_acks(port, backlog, k, hold):
    """With tcp_syncookies=2 every SYN is answered with a cookie and no request
    is kept. The k clients' ACKs are held back until every handshake is
    answered, then each sends data: the first backlog+1 become children, the
    others' cookies are checked against a full accept queue and dropped there
    (cookie_v4_check), again at each retransmission within `hold` seconds."""
    rule("-A", port)
    try:
        srv = listener(port, backlog)
        clients = connects(port, k)
        deadline = time.time() + 5
        pending = list(clients)
        while pending and time.time() < deadline:
            _, writable, _ = select.select([], pending, [], 0.1)
            pending = [c for c in pending if c not in writable]
    finally:
        rule("-D", port)
    established = k - len(pending)
    for c in clients:
        try:
            c.send(b"x")
        except OSError:
            pass
    time.sleep(hold)
    for c in clients:
        abort(c)
    srv.close()
    return {"connects": k, "established": established}


def syn_retrans():
    """TcpExtTCPSynRetrans of this network namespace."""
    with open("/proc/net/netstat") as f:
        lines = [l.split() for l in f if l.startswith("TcpExt:")]
    return int(lines[1][lines[0].index("TCPSynRetrans")])


def ack_overflow_resent(port, backlog, extra, hold):
    """ACK-stage drops whose requests the server then resends a SYN-ACK for,
    without iptables (for kernels in the matrix): with TCP_DEFER_ACCEPT of
    1 s a finished handshake stays a request until data comes; the accept
    queue is filled to its limit, `extra` more handshakes finish, then all
    send data: the first child fills the queue, the rest are dropped at the
    ACK stage and their requests, acked, get a SYN-ACK again at the first
    timer (1 s after their SYN). The clients are kept until the namespace's
    TCPSynRetrans has risen once for each dropped request, or `hold` seconds."""
    srv = listener(port, backlog, defer_accept=1)
    clients = []
    for _ in range(backlog):
        c = socket.create_connection((HOST, port), timeout=5)
        c.send(b"x")
        clients.append(c)
    time.sleep(0.1)
    before = syn_retrans()
    pending = [socket.create_connection((HOST, port), timeout=5) for _ in range(extra)]
    for c in pending:
        c.send(b"x")
    clients += pending
    deadline = time.time() + hold
    while syn_retrans() - before < extra - 1 and time.time() < deadline:
        time.sleep(0.02)
    resent = syn_retrans() - before
    for c in clients:
        abort(c)
    srv.close()
    return {"connects": backlog + extra, "synRetrans": resent}


def slow_accept(bind, port, backlog, k, hold, target):
    """The slow-accept shape on any address: a listener on `bind` ("::" is
    dual-stack) that never accepts, and k non-blocking connects to `target`
    (IPv4 or IPv6) while it is full."""
    srv = socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((bind, port))
    srv.listen(backlog)
    clients = []
    for _ in range(k):
        c = socket.socket(socket.AF_INET6 if ":" in target else socket.AF_INET)
        c.setblocking(False)
        try:
            c.connect((target, port))
        except BlockingIOError:
            pass
        clients.append(c)
        time.sleep(0.01)
    time.sleep(hold)
    for c in clients:
        c.close()
    srv.close()
    return {"connects": k}


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "held-acks":
        out = held_acks(int(args[0]), int(args[1]), int(args[2]), float(args[3]))
    elif mode == "cookie-acks":
        out = cookie_acks(int(args[0]), int(args[1]), int(args[2]), float(args[3]))
    elif mode == "slow-accept":
        out = slow_accept(args[0], int(args[1]), int(args[2]), int(args[3]), float(args[4]), args[5])
    elif mode == "ack-overflow-resent":
        out = ack_overflow_resent(int(args[0]), int(args[1]), int(args[2]), float(args[3]))
    else:
        raise SystemExit("unknown mode " + mode)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
