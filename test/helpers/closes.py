#!/usr/bin/env python3
"""Loopback closes that end a connection without a TIME_WAIT, and stray
segments a listener answers with a reset, run inside a test network namespace.

Each mode is bounded in count and time and prints one JSON line: what it did,
and the rise of the namespace's own MIB counters (read from /proc/net/netstat
here, so a caller in another namespace, like the kernel-matrix probe, has the
referee too). The kernel paths each mode takes are named in its docstring.
"""
import json
import os
import random
import socket
import struct
import sys
import threading
import time

HOST = "127.0.0.1"
MIB = ("TW", "TWKilled", "TCPTimeWaitOverflow", "TCPAbortOnData", "TCPAbortOnLinger", "ListenOverflows",
       "ListenDrops", "OutRsts", "EstabResets")


def mib():
    """The counters of MIB, from this namespace's /proc/net/netstat and /proc/net/snmp."""
    out = {}
    for path in ("/proc/net/netstat", "/proc/net/snmp"):
        with open(path) as f:
            lines = f.read().split("\n")
        for names, values in zip(lines[0::2], lines[1::2]):
            n, v = names.split(), values.split()
            if n and n[0] in ("TcpExt:", "Tcp:"):
                for name, value in zip(n[1:], v[1:]):
                    if name in MIB:
                        out[name] = int(value)
    return out


def sockstat_tw():
    """Timewait sockets the namespace holds now (sockstat's tw): on kernels
    that count TcpExtTW when a timewait socket expires (5.10) rather than when
    it is made, its rise in a new namespace is the count made, as long as
    none has ended yet (60 s)."""
    with open("/proc/net/sockstat") as f:
        line = next(l for l in f if l.startswith("TCP:")).split()
    return int(line[line.index("tw") + 1])


def rise(before, after):
    return {k: after.get(k, 0) - before.get(k, 0) for k in MIB}


def listener(port, backlog, host=HOST):
    srv = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, port))
    srv.listen(backlog)
    return srv


def drain(sock, timeout=5):
    """Reads until EOF or a reset (at most `timeout` s): True on EOF."""
    sock.settimeout(timeout)
    try:
        while sock.recv(4096):
            pass
        return True
    except (ConnectionResetError, socket.timeout):
        return False


def late_answer(n, port):
    """The WebSocket shape of issue 15: a client sends its request and exits
    (close(): its socket is an orphan in FIN_WAIT1); the server reads the
    request and the FIN, then answers. The FIN's ACK was held back (delayed
    ACK, the socket went interactive on the FIN) and rides on the answer:
    the orphan gets the ACK of its FIN plus data, moves to FIN_WAIT2 and
    tcp_done()s at once (TCPAbortOnData), then resets the server. When the
    ACK went alone first, the data meets the orphan in FIN_WAIT2 instead
    (tcp_reset(), also TCPAbortOnData). Neither makes a timewait socket."""
    srv = listener(port, 128)
    ports = []
    for _ in range(n):
        cli = socket.create_connection((HOST, port), timeout=5)
        conn, _ = srv.accept()
        ports.append(cli.getsockname()[1])
        cli.sendall(b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n")
        cli.close()
        conn.settimeout(5)
        got = b""
        while True:
            chunk = conn.recv(4096)
            if not chunk:
                break
            got += chunk
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
        drain(conn)
        conn.close()
    srv.close()
    return {"closes": n, "client_ports": ports}


def linger2(n, port, shutdown_first):
    """TCP_LINGER2 < 0 on the client. Closed at once: its orphan, on the ACK
    of its FIN, moves to FIN_WAIT2 and tcp_done()s (TCPAbortOnData), then
    resets the server. With shutdown_first, the FIN goes out and is acked
    while the socket is open (FIN_WAIT2), and close() then moves it to CLOSE
    and resets the server (TCPAbortOnLinger): the move to CLOSE comes first,
    the reset after. No timewait socket either way."""
    srv = listener(port, 128)
    ports = []
    for _ in range(n):
        cli = socket.create_connection((HOST, port), timeout=5)
        cli.setsockopt(socket.IPPROTO_TCP, socket.TCP_LINGER2, -1)
        conn, _ = srv.accept()
        ports.append(cli.getsockname()[1])
        if shutdown_first:
            cli.shutdown(socket.SHUT_WR)
            conn.settimeout(5)
            conn.recv(1)  # the client's FIN, acked at once: the client is in FIN_WAIT2
            deadline = time.monotonic() + 5
            while tcp_state(cli) != 5 and time.monotonic() < deadline:  # TCP_FIN_WAIT2
                time.sleep(0.001)
        cli.close()
        drain(conn)
        conn.close()
    srv.close()
    return {"closes": n, "client_ports": ports}


def tcp_state(sock):
    """The socket's TCP state (TCP_INFO's first byte)."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]


def fin_timeout(n, port, hold):
    """Orphans left in FIN_WAIT2 (the server never answers the FIN within
    `hold` s), with the namespace's tcp_fin_timeout set short by the caller.
    Each either becomes a timewait socket in its FIN_WAIT2 substate at once
    (counted in TWKilled: its timer is short) or, when the ACK of its FIN
    was handled from the socket's backlog, waits on its FIN_WAIT2 timer,
    which gives up with a reset and tcp_done() (no timewait socket)."""
    srv = listener(port, 128)
    held = []
    ports = []
    for _ in range(n):
        cli = socket.create_connection((HOST, port), timeout=5)
        conn, _ = srv.accept()
        ports.append(cli.getsockname()[1])
        cli.close()
        held.append(conn)
    time.sleep(hold)
    for conn in held:
        conn.close()
    srv.close()
    return {"closes": n, "client_ports": ports}


def active_close(n, port, host=HOST):
    """n connections the client closes first, each after the server has
    answered and read: with the namespace's tcp_max_tw_buckets below n, the
    kernel makes timewait sockets until the limit, then closes the rest
    without one (TCPTimeWaitOverflow)."""
    srv = listener(port, 128, host)
    ports = []
    for _ in range(n):
        cli = socket.create_connection((host, port), timeout=5)
        conn, _ = srv.accept()
        ports.append(cli.getsockname()[1])
        cli.close()
        drain(conn)
        conn.close()
    time.sleep(0.1)
    srv.close()
    return {"closes": n, "client_ports": ports}


def ws_storm(clients, port, backlog, accept_every, seed):
    """A loopback WebSocket-style load: `clients` clients connect at once to
    a listener with a small backlog that accepts one connection every
    `accept_every` s and answers each request; each client sends its request
    and exits after a random wait (0 to 2 s), many before their answer.
    Makes accept-queue overflows, aborts on data, resets both ways and
    TIME_WAITs, all at once."""
    rnd = random.Random(seed)
    srv = listener(port, backlog)
    stop = time.monotonic() + 30
    served = [0]
    done = threading.Event()

    def serve():
        srv.settimeout(0.2)
        while time.monotonic() < stop:
            try:
                conn, _ = srv.accept()
            except socket.timeout:
                if done.is_set():
                    return
                continue
            except OSError:
                return
            served[0] += 1
            conn.settimeout(0.3)
            try:
                conn.recv(4096)
                # Late for many: the client's orphan aborts on this data.
                conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
                conn.settimeout(0.05)
                conn.recv(4096)
            except OSError:
                pass
            # The server closes first where the client is still there: a
            # TIME_WAIT on this side when the client then closes too.
            conn.close()
            time.sleep(accept_every)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    waits = [rnd.random() * 2.0 for _ in range(clients)]
    socks = []
    t0 = time.monotonic()
    for w in waits:
        c = socket.socket()
        c.setblocking(False)
        try:
            c.connect((HOST, port))
        except BlockingIOError:
            pass
        socks.append((w, c))
    sent = [False] * clients
    closed = 0
    # Each client sends its request once connected and exits at its time.
    while closed < clients and time.monotonic() < stop:
        now = time.monotonic() - t0
        for i, (w, c) in enumerate(socks):
            if c is None:
                continue
            if not sent[i]:
                try:
                    c.send(b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n")
                    sent[i] = True
                except (BlockingIOError, OSError):
                    pass
            if now >= w:
                c.close()
                socks[i] = (w, None)
                closed += 1
        time.sleep(0.005)
    done.set()
    server.join(timeout=35)
    srv.close()
    return {"clients": clients, "accepted": served[0]}


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def stray_acks(n, port, host):
    """A listener (bound to the wildcard address) gets n bare ACKs, each from
    another source port, for connections it never had: it answers each with
    a reset from state LISTEN. Sent through a raw socket: no local socket owns
    those source ports, so the resets end there."""
    six = ":" in host
    srv = listener(port, 16, "::" if six else "0.0.0.0")
    raw = socket.socket(socket.AF_INET6 if six else socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    if six:
        # The kernel fills in the TCP checksum (offset 16) of an IPv6 raw socket's data.
        raw.setsockopt(socket.IPPROTO_IPV6, 7, 16)  # IPV6_CHECKSUM
    sports = []
    for i in range(n):
        sport = 40000 + i
        hdr = struct.pack("!HHIIBBHHH", sport, port, 1000 + i, 5000 + i, 5 << 4, 0x10, 65535, 0, 0)
        if not six:
            pseudo = socket.inet_aton(host) + socket.inet_aton(host) + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(hdr))
            hdr = hdr[:16] + struct.pack("!H", checksum(pseudo + hdr)) + hdr[18:]
        raw.sendto(hdr, (host, 0))
        sports.append(sport)
    raw.close()
    time.sleep(0.1)
    srv.close()
    return {"sent": n, "source_ports": sports}


def abort_overflow(port, backlog, extra):
    """With the caller's tcp_abort_on_overflow=1: fill the accept queue (the
    server never accepts; TCP_DEFER_ACCEPT keeps finished handshakes as
    requests until data comes), open `extra` more, then send their data: the
    first makes the queue full, and the listener resets each of the rest
    (ListenOverflows) instead of dropping its ACK."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 5)
    srv.bind((HOST, port))
    srv.listen(backlog)
    clients = []
    for _ in range(backlog):
        c = socket.create_connection((HOST, port), timeout=5)
        c.send(b"x")
        clients.append(c)
    time.sleep(0.1)
    pending = [socket.create_connection((HOST, port), timeout=5) for _ in range(extra)]
    ports = [c.getsockname()[1] for c in pending]
    for c in pending:
        c.send(b"x")
    reset = 0
    for c in pending:
        if not drain(c, 2):
            reset += 1
    for c in clients + pending:
        c.close()
    srv.close()
    return {"client_ports": ports, "reset": reset}


def wait_state(sock, state, timeout=5):
    deadline = time.monotonic() + timeout
    while tcp_state(sock) != state and time.monotonic() < deadline:
        time.sleep(0.001)
    return tcp_state(sock) == state


def abort_mix(n, port):
    """Resets "received" that no peer sent, between real ones, on one CPU.
    Each round: (a) a client shuts down its side, waits for FIN_WAIT2 and
    closes (TCP_LINGER2 120 s keeps the orphan a full socket rather than a
    timewait one); the server, in CLOSE_WAIT, then writes: the orphan meets
    data while closed for reading, counts TCPAbortOnData and calls
    tcp_reset() (no reset came), and resets the server, which gets a real
    one in CLOSE_WAIT. (b) a server shuts down both ways (FIN_WAIT2, closed
    for reading) and its client closes with SO_LINGER 0: the server gets a
    real reset in FIN_WAIT2, and close() counts TCPAbortOnData after that
    reset. Real resets received: 2 per round, both on the server's port;
    TCPAbortOnData: 2 per round; resets sent: 2 per round."""
    srv = listener(port, 128)
    for _ in range(n):
        # (a) data to an orphan in FIN_WAIT2
        cli = socket.create_connection((HOST, port), timeout=5)
        cli.setsockopt(socket.IPPROTO_TCP, socket.TCP_LINGER2, 120)
        conn, _ = srv.accept()
        cli.shutdown(socket.SHUT_WR)
        conn.settimeout(5)
        conn.recv(1)  # the client's FIN: the server is in CLOSE_WAIT, the client soon in FIN_WAIT2
        wait_state(cli, 5)
        cli.close()
        conn.sendall(b"late")
        drain(conn)
        conn.close()
        # (b) a linger-0 close to a server closed for reading
        cli = socket.create_connection((HOST, port), timeout=5)
        cli.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn, _ = srv.accept()
        conn.shutdown(socket.SHUT_RDWR)
        cli.settimeout(5)
        cli.recv(1)  # the server's FIN: acked, the server goes to FIN_WAIT2
        wait_state(conn, 5)
        cli.close()
        drain(conn)
        conn.close()
    srv.close()
    return {"rounds": n}


def matrix_timewait(port):
    """The kernel matrix's check, in one run (the caller gives it a fresh
    namespace): aborts on data, linger2 < 0 both ways, then active closes
    past a tcp_max_tw_buckets 3 above what the namespace holds."""
    late_answer(8, port)
    linger2(5, port, False)
    linger2(5, port, True)
    with open("/proc/sys/net/ipv4/tcp_max_tw_buckets", "w") as f:
        f.write(str(sockstat_tw() + 3))
    active_close(8, port)
    return {}


def main():
    mode, a = sys.argv[1], sys.argv[2:]
    before = mib()
    tw_before = sockstat_tw()
    if mode == "late-answer":
        out = late_answer(int(a[0]), int(a[1]))
    elif mode == "linger2":
        out = linger2(int(a[0]), int(a[1]), len(a) > 2 and a[2] == "shutdown-first")
    elif mode == "fin-timeout":
        out = fin_timeout(int(a[0]), int(a[1]), float(a[2]))
    elif mode == "active-close":
        out = active_close(int(a[0]), int(a[1]), a[2] if len(a) > 2 else HOST)
    elif mode == "ws-storm":
        out = ws_storm(int(a[0]), int(a[1]), int(a[2]), float(a[3]), int(a[4]))
    elif mode == "stray-acks":
        out = stray_acks(int(a[0]), int(a[1]), a[2] if len(a) > 2 else HOST)
    elif mode == "abort-overflow":
        out = abort_overflow(int(a[0]), int(a[1]), int(a[2]))
    elif mode == "abort-mix":
        out = abort_mix(int(a[0]), int(a[1]))
    elif mode == "matrix-timewait":
        out = matrix_timewait(int(a[0]))
    else:
        raise SystemExit("unknown mode " + mode)
    out["mib"] = rise(before, mib())
    out["tw"] = sockstat_tw() - tw_before
    out["netns"] = os.stat("/proc/self/ns/net").st_ino
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
