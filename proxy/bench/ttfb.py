# Time to first SSE data line and total stream time, direct vs via goproxy.
import socket, sys, time, statistics
def run(port, path="/v1/chat/completions"):
    body = b'{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}'
    req = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer bench-client-key\r\n"
           f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
    s = socket.create_connection(("127.0.0.1", port)); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    t0 = time.perf_counter(); s.sendall(req); buf = b""; first = None
    while True:
        d = s.recv(65536)
        if not d: break
        buf += d
        if first is None and b"data:" in buf: first = time.perf_counter() - t0
    total = time.perf_counter() - t0; s.close()
    assert b"[DONE]" in buf, buf[-200:]
    return first, total
for port in (19000, 18004):
    runs = [run(port) for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 20)]
    f = sorted(r[0] * 1000 for r in runs); t = sorted(r[1] * 1000 for r in runs)
    print(f"port {port}: first data line p50 {statistics.median(f):.2f} ms max {f[-1]:.2f} ms; whole stream p50 {statistics.median(t):.1f} ms (n={len(runs)})")
