#!/usr/bin/env python3
"""Loopback traffic for the kernel tests, run inside a test network namespace.

Every mode is bounded in count and time and prints one JSON line with what it
did, so the test can compare it with what wstrace and the kernel counted.
Python because a listener that never accepts needs raw socket control that
Node's net module does not give (it accepts as soon as a child is queued).
"""
import json
import os
import socket
import struct
import sys
import time

HOST = "127.0.0.1"


def listener(port, backlog, defer_accept=0):
    """A listening socket on HOST:port (SO_REUSEADDR, optionally TCP_DEFER_ACCEPT)."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if defer_accept:
        srv.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, defer_accept)
    srv.bind((HOST, port))
    srv.listen(backlog)
    return srv


def abort(sock):
    """close() with SO_LINGER 0: the kernel sends a RST instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def wait_peer_close(sock):
    """Reads until the peer's FIN or RST arrives (at most 5 s), then closes."""
    sock.settimeout(5)
    try:
        sock.recv(1)
    except ConnectionResetError:
        pass
    sock.close()


def closed_port(n, port, host=HOST, batch=0, pause=0.0):
    """n connects to a port nobody listens on: each gets a RST. With batch and
    pause, sleeps `pause` seconds after every `batch` connects (a paced storm)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    refused = 0
    for i in range(n):
        if batch and i and i % batch == 0:
            time.sleep(pause)
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            s.connect((host, port))
        except ConnectionRefusedError:
            refused += 1
        finally:
            s.close()
    return {"refused": refused}


def linger0(port):
    """One established connection, then the client closes with SO_LINGER 0: a RST."""
    srv = listener(port, 8)
    cli = socket.create_connection((HOST, port), timeout=5)
    conn, _ = srv.accept()
    client_port = cli.getsockname()[1]
    abort(cli)
    wait_peer_close(conn)
    srv.close()
    return {"client_port": client_port}


def timewait(m, port):
    """m connections where the client closes first: m client sockets enter TIME_WAIT."""
    srv = listener(port, 128)
    for _ in range(m):
        cli = socket.create_connection((HOST, port), timeout=5)
        conn, _ = srv.accept()
        cli.close()  # active close: FIN from the client
        conn.settimeout(5)
        conn.recv(1)  # the server sees EOF ...
        conn.close()  # ... and closes: the client's last ACK puts it in TIME_WAIT
    time.sleep(0.2)
    srv.close()
    return {"closed": m}


def mixed_close(m, port):
    """m rounds of two connections: one the client closes with SO_LINGER 0 (a
    RST, no TIME_WAIT), then one it closes first (a TIME_WAIT), back to back so
    the second socket often reuses the first one's memory."""
    srv = listener(port, 128)
    for _ in range(m):
        for linger in (True, False):
            cli = socket.create_connection((HOST, port), timeout=5)
            conn, _ = srv.accept()
            if linger:
                abort(cli)
            else:
                cli.close()
            wait_peer_close(conn)
    time.sleep(0.2)
    srv.close()
    return {"resets": m, "timewaits": m}


def late_reset(port, go, wait):
    """A connection accepted now and reset by the server (SO_LINGER 0 on the
    accepted socket) once the file `go` exists, or after `wait` seconds: a
    long-lived stream that dies when the caller is ready to see it."""
    srv = listener(port, 8)
    cli = socket.create_connection((HOST, port), timeout=5)
    client_port = cli.getsockname()[1]
    conn, _ = srv.accept()
    deadline = time.time() + wait
    while not os.path.exists(go) and time.time() < deadline:
        time.sleep(0.02)
    abort(conn)
    wait_peer_close(cli)
    srv.close()
    return {"client_port": client_port}


def reset_in_fin_wait2(port):
    """The client half-closes (FIN_WAIT2 once acked), then the server aborts
    with SO_LINGER 0: the client gets a RST in FIN_WAIT2 and closes without
    a TIME_WAIT."""
    srv = listener(port, 8)
    cli = socket.create_connection((HOST, port), timeout=5)
    client_port = cli.getsockname()[1]
    conn, _ = srv.accept()
    cli.shutdown(socket.SHUT_WR)
    conn.settimeout(5)
    conn.recv(1)  # the client's FIN: it is acked, the client is in FIN_WAIT2
    time.sleep(0.05)
    abort(conn)
    wait_peer_close(cli)
    srv.close()
    return {"client_port": client_port}


def full_queue(port, backlog, k, hold):
    """A listener that never accepts, and k connects: the accept queue fills."""
    srv = listener(port, backlog)
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
    time.sleep(hold)
    for c in clients:
        c.close()
    srv.close()
    return {"connects": k}


def ack_overflow(port, backlog, extra, hold):
    """ACK-stage overflow. With TCP_DEFER_ACCEPT the server keeps a finished
    handshake as a request until data arrives. Fill the accept queue to its
    limit, open `extra` more handshakes (the SYN check passes: depth == limit
    is not full), then send their data: the first child makes the queue full
    and the kernel drops the rest at the ACK stage (LISTEN_OVERFLOW)."""
    srv = listener(port, backlog, defer_accept=5)
    clients = []
    for _ in range(backlog):
        c = socket.create_connection((HOST, port), timeout=5)
        c.send(b"x")
        clients.append(c)
    time.sleep(0.1)
    pending = [socket.create_connection((HOST, port), timeout=5) for _ in range(extra)]
    for c in pending:
        c.send(b"x")
    clients += pending
    time.sleep(hold)
    for c in clients:
        abort(c)
    srv.close()
    return {"connects": backlog + extra}


def packet_on_every_cpu():
    """One UDP datagram to a closed port from each CPU in turn (pinned): a
    loopback packet is received on the CPU that sent it, so each CPU starts one."""
    cpus = sorted(os.sched_getaffinity(0))
    for cpu in cpus:
        os.sched_setaffinity(0, {cpu})
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.sendto(b"x", (HOST, 9))
        s.close()
    return {"cpus": len(cpus)}


def main():
    mode, args = sys.argv[1], [a for a in sys.argv[2:]]
    if mode == "closed-port":
        out = closed_port(
            int(args[0]),
            int(args[1]),
            args[2] if len(args) > 2 else HOST,
            int(args[3]) if len(args) > 3 else 0,
            float(args[4]) if len(args) > 4 else 0.0,
        )
    elif mode == "linger0":
        out = linger0(int(args[0]))
    elif mode == "timewait":
        out = timewait(int(args[0]), int(args[1]))
    elif mode == "mixed-close":
        out = mixed_close(int(args[0]), int(args[1]))
    elif mode == "late-reset":
        out = late_reset(int(args[0]), args[1], float(args[2]))
    elif mode == "reset-in-fin-wait2":
        out = reset_in_fin_wait2(int(args[0]))
    elif mode == "full-queue":
        out = full_queue(int(args[0]), int(args[1]), int(args[2]), float(args[3]))
    elif mode == "ack-overflow":
        out = ack_overflow(int(args[0]), int(args[1]), int(args[2]), float(args[3]))
    elif mode == "packet-on-every-cpu":
        out = packet_on_every_cpu()
    else:
        raise SystemExit("unknown mode " + mode)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
