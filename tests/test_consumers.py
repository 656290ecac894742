"""Real consumers of the socket module, with fastsock sockets underneath.

Each test moves real traffic over loopback or AF_UNIX and checks that the
sockets doing the work are ``fastsock.socket`` objects:

* in this process, by handing fastsock sockets to socketserver, http.server,
  http.client/urllib, asyncio, ssl and selectors (the ways their APIs accept
  a socket, or a module attribute for http.client);
* in a subprocess where ``sys.modules['socket'] = fastsock`` was set before
  the stdlib modules were imported, so they build fastsock sockets themselves.

TLS uses a certificate made for the test: by the ``openssl`` CLI when it is
on PATH, else by ``cryptography`` when importable, else the TLS tests skip.
"""

from __future__ import annotations

import asyncio
import datetime
import http.client
import http.server
import json
import os
import selectors
import shutil
import socket
import socketserver
import ssl
import subprocess
import sys
import tempfile
import textwrap
import threading
import urllib.request

import pytest

import fastsock

TIMEOUT = 20


def _serve_in_thread(server):
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True)
    t.start()
    return t


def _stop(server, thread):
    server.shutdown()
    server.server_close()
    thread.join(TIMEOUT)
    assert not thread.is_alive()


def _with_fastsock_socket(server_cls):
    """``server_cls`` whose listening socket is a fastsock socket."""

    class Server(server_cls):
        daemon_threads = True
        allow_reuse_address = True

        def __init__(self, address, handler):
            super().__init__(address, handler, bind_and_activate=False)
            self.socket.close()
            self.socket = fastsock.socket(self.address_family, self.socket_type)
            try:
                self.server_bind()
                self.server_activate()
            except BaseException:
                self.server_close()
                raise

    return Server


# ---------------------------------------------------------------------------
# socketserver

class _LineHandler(socketserver.StreamRequestHandler):
    seen: list = []

    def handle(self):
        type(self).seen.append(type(self.request))
        for line in self.rfile:
            self.wfile.write(line.upper())


def test_socketserver_threading_tcp():
    _LineHandler.seen = []
    server = _with_fastsock_socket(socketserver.ThreadingTCPServer)(("127.0.0.1", 0),
                                                                     _LineHandler)
    assert type(server.socket) is fastsock.socket and server.socket.backlog >= 1
    thread = _serve_in_thread(server)
    try:
        clients = [fastsock.create_connection(server.server_address, timeout=TIMEOUT)
                   for _ in range(5)]
        for i, c in enumerate(clients):
            c.sendall(b"hello %d\n" % i)
        for i, c in enumerate(clients):
            with c, c.makefile("rb") as f:
                assert f.readline() == b"HELLO %d\n" % i
    finally:
        _stop(server, thread)
    assert _LineHandler.seen == [fastsock.socket] * 5


def test_socketserver_threading_unix_stream(tmp_path):
    _LineHandler.seen = []
    path = str(tmp_path / "s")
    server = _with_fastsock_socket(socketserver.ThreadingUnixStreamServer)(path, _LineHandler)
    thread = _serve_in_thread(server)
    try:
        with fastsock.socket(socket.AF_UNIX) as c:
            c.settimeout(TIMEOUT)
            c.connect(path)
            c.sendall(b"unix\n")
            with c.makefile("rb") as f:
                assert f.readline() == b"UNIX\n"
    finally:
        _stop(server, thread)
    assert _LineHandler.seen == [fastsock.socket]


# ---------------------------------------------------------------------------
# http.server with urllib and http.client

class _EchoHTTP(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"       # keep-alive: several requests per connection
    seen: list = []

    def do_POST(self):
        type(self).seen.append(type(self.connection))
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[::-1])

    def log_message(self, *args):
        pass


@pytest.fixture
def http_client_on_fastsock(monkeypatch):
    """http.client (and so urllib) connect with fastsock.create_connection."""
    monkeypatch.setattr(http.client, "socket", fastsock)


def test_http_server_with_http_client(http_client_on_fastsock):
    _EchoHTTP.seen = []
    server = _with_fastsock_socket(http.server.ThreadingHTTPServer)(("127.0.0.1", 0),
                                                                     _EchoHTTP)
    thread = _serve_in_thread(server)
    try:
        conn = http.client.HTTPConnection(*server.server_address, timeout=TIMEOUT)
        for i in range(3):
            conn.request("POST", "/", body=b"abc%d" % i)
            resp = conn.getresponse()
            assert resp.status == 200 and resp.read() == b"%dcba" % i
            assert type(conn.sock) is fastsock.socket
        conn.close()
    finally:
        _stop(server, thread)
    assert _EchoHTTP.seen == [fastsock.socket] * 3


def test_http_server_with_urllib(http_client_on_fastsock, tmp_path):
    (tmp_path / "hello.txt").write_bytes(b"hello from fastsock\n" * 100)

    class Files(http.server.SimpleHTTPRequestHandler):
        seen: list = []

        def __init__(self, *args, **kw):
            type(self).seen.append(type(args[0]))
            super().__init__(*args, directory=str(tmp_path), **kw)

        def log_message(self, *args):
            pass

    server = _with_fastsock_socket(http.server.ThreadingHTTPServer)(("127.0.0.1", 0), Files)
    thread = _serve_in_thread(server)
    try:
        host, port = server.server_address
        with urllib.request.urlopen(f"http://{host}:{port}/hello.txt", timeout=TIMEOUT) as r:
            assert r.status == 200
            assert r.read() == b"hello from fastsock\n" * 100
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://{host}:{port}/missing", timeout=TIMEOUT)
        assert e.value.code == 404
        e.value.close()
    finally:
        _stop(server, thread)
    assert Files.seen == [fastsock.socket] * 2


def test_urllib_connection_refused(http_client_on_fastsock):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(urllib.error.URLError) as e:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=TIMEOUT)
    assert isinstance(e.value.reason, ConnectionRefusedError)
    assert isinstance(e.value.reason, fastsock.RefusedError)


# ---------------------------------------------------------------------------
# asyncio

def _run(coro):
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT))


class _Echo(asyncio.Protocol):
    socks: list = []

    def connection_made(self, transport):
        type(self).socks.append(transport.get_extra_info("socket"))
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data.upper())


def _raw(transport_socket):
    # asyncio hands out a TransportSocket wrapper; the socket is inside
    return getattr(transport_socket, "_sock", transport_socket)


def test_asyncio_create_server_with_sock():
    async def main():
        loop = asyncio.get_running_loop()
        lst = fastsock.listen(("127.0.0.1", 0))
        server = await loop.create_server(_Echo, sock=lst)
        async with server:
            replies = []
            for i in range(3):
                r, w = await asyncio.open_connection(*lst.getsockname())
                w.write(b"x%d" % i)
                replies.append(await r.readexactly(2))
                w.close()
                await w.wait_closed()
            return replies

    _Echo.socks = []
    assert _run(main()) == [b"X0", b"X1", b"X2"]
    assert [type(_raw(s)) for s in _Echo.socks] == [fastsock.socket] * 3


def test_asyncio_start_server_with_unix_sock(tmp_path):
    path = str(tmp_path / "a")
    seen = []

    async def handle(reader, writer):
        seen.append(type(_raw(writer.get_extra_info("socket"))))
        writer.write((await reader.readline()).upper())
        await writer.drain()
        writer.close()

    async def main():
        lst = fastsock.listen(path)
        server = await asyncio.start_server(handle, sock=lst)
        async with server:
            cli = fastsock.socket(socket.AF_UNIX)
            cli.connect(path)
            r, w = await asyncio.open_unix_connection(sock=cli)
            w.write(b"unix line\n")
            line = await r.readline()
            w.close()
            await w.wait_closed()
            return line

    assert _run(main()) == b"UNIX LINE\n"
    assert seen == [fastsock.socket]
    assert not os.path.exists(path)     # the listener fastsock.listen made removed it


def test_asyncio_sock_accept_and_sock_connect():
    async def main():
        loop = asyncio.get_running_loop()
        lst = fastsock.listen(("127.0.0.1", 0))
        lst.setblocking(False)
        cli = fastsock.socket()
        cli.setblocking(False)
        with lst, cli:
            (conn, addr), _ = await asyncio.gather(loop.sock_accept(lst),
                                                   loop.sock_connect(cli, lst.getsockname()))
            with conn:
                assert type(conn) is fastsock.socket and addr == cli.getsockname()
                conn.setblocking(False)
                await loop.sock_sendall(cli, b"ping")
                assert await loop.sock_recv(conn, 4) == b"ping"
                await loop.sock_sendall(conn, b"pong")
                assert await loop.sock_recv(cli, 4) == b"pong"

            refused = fastsock.socket()
            refused.setblocking(False)
            with refused:
                port = cli.getsockname()[1]     # nothing listens there
                with pytest.raises(ConnectionRefusedError):
                    await loop.sock_connect(refused, ("127.0.0.1", port))
        return True

    assert _run(main())


# ---------------------------------------------------------------------------
# ssl: a real TLS handshake, fastsock sockets on both sides

def _make_cert(directory: str) -> tuple[str, str]:
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    if shutil.which("openssl"):
        r = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
             "-days", "2", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
            capture_output=True, text=True, timeout=60, check=False)
        if r.returncode == 0:
            return cert, key
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        pytest.skip("no openssl CLI and no cryptography package to make a test certificate")
    import ipaddress
    pkey = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    crt = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
           .public_key(pkey.public_key()).serial_number(x509.random_serial_number())
           .not_valid_before(now - datetime.timedelta(hours=1))
           .not_valid_after(now + datetime.timedelta(days=2))
           .add_extension(x509.SubjectAlternativeName([
               x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
               critical=False)
           .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
           .sign(pkey, hashes.SHA256()))
    with open(cert, "wb") as f:
        f.write(crt.public_bytes(serialization.Encoding.PEM))
    with open(key, "wb") as f:
        f.write(pkey.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    return cert, key


@pytest.fixture(scope="module")
def tls_files():
    d = tempfile.mkdtemp()
    try:
        yield _make_cert(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def tls(tls_files):
    cert, key = tls_files
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=cert)
    return server, client


def test_tls_handshake_over_fastsock_sockets(tls):
    server_ctx, client_ctx = tls
    lst = fastsock.listen(("127.0.0.1", 0))
    result = {}

    def serve():
        conn, _ = lst.accept()
        result["server_sock"] = type(conn)
        conn.settimeout(TIMEOUT)
        with server_ctx.wrap_socket(conn, server_side=True) as t:
            t.sendall(t.recv(100).upper())
            result["server_version"] = t.version()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    with lst:
        raw = fastsock.socket()
        raw.settimeout(TIMEOUT)
        raw.connect(lst.getsockname())
        assert type(raw) is fastsock.socket
        with client_ctx.wrap_socket(raw, server_hostname="localhost") as t:
            t.sendall(b"secret")
            assert t.recv(100) == b"SECRET"
            version = t.version()
            assert version.startswith("TLS")
            assert dict(x[0] for x in t.getpeercert()["subject"])["commonName"] == "localhost"
        thread.join(TIMEOUT)
    assert result == {"server_sock": fastsock.socket, "server_version": version}


def test_tls_wrong_host_fails_the_handshake(tls):
    server_ctx, client_ctx = tls
    lst = fastsock.listen(("127.0.0.1", 0))

    def serve():
        conn, _ = lst.accept()
        conn.settimeout(TIMEOUT)
        try:
            server_ctx.wrap_socket(conn, server_side=True).close()
        except (ssl.SSLError, OSError):
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    with lst:
        raw = fastsock.create_connection(lst.getsockname(), timeout=TIMEOUT)
        with pytest.raises(ssl.SSLCertVerificationError):
            client_ctx.wrap_socket(raw, server_hostname="not-localhost.example")
        raw.close()
        thread.join(TIMEOUT)


def test_asyncio_tls_server(tls):
    server_ctx, client_ctx = tls

    async def handle(reader, writer):
        writer.write((await reader.readline()).upper())
        await writer.drain()
        writer.close()

    async def main():
        lst = fastsock.listen(("127.0.0.1", 0))
        server = await asyncio.start_server(handle, sock=lst, ssl=server_ctx)
        async with server:
            raw = fastsock.create_connection(lst.getsockname())
            r, w = await asyncio.open_connection(sock=raw, ssl=client_ctx,
                                                 server_hostname="localhost")
            w.write(b"tls\n")
            line = await r.readline()
            assert w.get_extra_info("ssl_object").version().startswith("TLS")
            w.close()
            await w.wait_closed()
            return line

    assert _run(main()) == b"TLS\n"


# ---------------------------------------------------------------------------
# selectors

def test_selectors_echo_server():
    sel = selectors.DefaultSelector()
    lst = fastsock.listen(("127.0.0.1", 0))
    lst.setblocking(False)
    sel.register(lst, selectors.EVENT_READ, "listener")
    clients = [fastsock.create_connection(lst.getsockname(), timeout=TIMEOUT)
               for _ in range(4)]
    for i, c in enumerate(clients):
        c.sendall(b"m%d" % i)
    accepted, served = [], 0
    try:
        while served < len(clients):
            events = sel.select(TIMEOUT)
            assert events, "selector timed out"
            for key, _ in events:
                if key.data == "listener":
                    conn, _ = lst.accept()
                    accepted.append(conn)
                    conn.setblocking(False)
                    sel.register(conn, selectors.EVENT_READ, "conn")
                else:
                    data = key.fileobj.recv(10)
                    key.fileobj.sendall(data.upper())
                    sel.unregister(key.fileobj)
                    served += 1
        for i, c in enumerate(clients):
            assert c.recv(10) == b"M%d" % i
    finally:
        sel.close()
        for s in [lst, *clients, *accepted]:
            s.close()
    assert [type(s) for s in accepted] == [fastsock.socket] * 4


# ---------------------------------------------------------------------------
# the stdlib imported after sys.modules['socket'] = fastsock

_SWAPPED = textwrap.dedent(r"""
    import sys, json
    import fastsock
    sys.modules["socket"] = fastsock
    import socket
    assert socket is fastsock
    which = sys.argv[1]
    out = {}

    def serve(server):
        import threading
        t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                             daemon=True)
        t.start()
        return t

    if which == "modules":
        import asyncio.base_events, ftplib, http.client, http.server, imaplib, \
            multiprocessing.connection, poplib, smtplib, socketserver, ssl, \
            urllib.request, xmlrpc.client
        out["bound"] = {m.__name__: m.socket is fastsock for m in (
            asyncio.base_events, ftplib, http.client, http.server, imaplib,
            multiprocessing.connection, poplib, smtplib, socketserver, urllib.request)}
        out["ssl_base"] = issubclass(ssl.SSLSocket, fastsock.socket)

    elif which == "http":
        import http.server, threading, urllib.request
        seen = []
        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                seen.append(type(self.connection).__module__)
                body = self.path.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            def log_message(self, *a):
                pass
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        t = serve(srv)
        host, port = srv.server_address
        with urllib.request.urlopen(f"http://{host}:{port}/a/b", timeout=20) as r:
            out["body"] = r.read().decode()
        srv.shutdown(); srv.server_close()
        out["listener"] = type(srv.socket).__module__
        out["accepted"] = seen

    elif which == "socketserver-unix":
        import os, socketserver, tempfile
        seen = []
        class H(socketserver.StreamRequestHandler):
            def handle(self):
                seen.append(type(self.request).__module__)
                self.wfile.write(self.rfile.readline().upper())
        path = os.path.join(tempfile.mkdtemp(), "s")
        srv = socketserver.ThreadingUnixStreamServer(path, H)
        t = serve(srv)
        c = socket.socket(socket.AF_UNIX)
        c.settimeout(20)
        c.connect(path)
        c.sendall(b"abc\n")
        out["reply"] = c.makefile("rb").readline().decode()
        c.close()
        srv.shutdown(); srv.server_close()
        out["accepted"] = seen

    elif which == "asyncio":
        import asyncio
        seen = []
        async def handle(r, w):
            seen.append(type(w.get_extra_info("socket")._sock).__module__)
            w.write(await r.readline()); await w.drain(); w.close()
        async def main():
            srv = await asyncio.start_server(handle, "127.0.0.1", 0)
            port = srv.sockets[0].getsockname()[1]
            out["listener"] = type(srv.sockets[0]._sock).__module__
            async with srv:
                r, w = await asyncio.open_connection("127.0.0.1", port)
                out["client"] = type(w.get_extra_info("socket")._sock).__module__
                w.write(b"line\n")
                out["reply"] = (await r.readline()).decode()
                w.close(); await w.wait_closed()
        asyncio.run(asyncio.wait_for(main(), 20))
        out["accepted"] = seen

    elif which == "ssl":
        import ssl, threading
        cert, key = sys.argv[2], sys.argv[3]
        sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); sctx.load_cert_chain(cert, key)
        cctx = ssl.create_default_context(cafile=cert)
        lst = sctx.wrap_socket(socket.create_server(("127.0.0.1", 0)), server_side=True)
        out["listener_mro"] = [c.__module__ + "." + c.__qualname__ for c in type(lst).__mro__[:3]]
        def srv():
            conn, _ = lst.accept()          # SSLSocket.accept -> fastsock.socket.accept
            out["accepted"] = type(conn).__name__
            conn.sendall(conn.recv(100).upper()); conn.close()
        t = threading.Thread(target=srv); t.start()
        with socket.create_connection(lst.getsockname(), timeout=20) as raw:
            with cctx.wrap_socket(raw, server_hostname="localhost") as c:
                c.sendall(b"over tls"); out["reply"] = c.recv(100).decode()
                out["version"] = c.version()
        t.join(20); lst.close()

    elif which == "xmlrpc":
        import xmlrpc.client, xmlrpc.server
        srv = xmlrpc.server.SimpleXMLRPCServer(("127.0.0.1", 0), logRequests=False)
        srv.register_function(lambda a, b: a + b, "add")
        t = serve(srv)
        host, port = srv.server_address
        with xmlrpc.client.ServerProxy(f"http://{host}:{port}/") as p:
            out["sum"] = p.add(2, 3)
        srv.shutdown(); srv.server_close()
        out["listener"] = type(srv.socket).__module__

    elif which == "multiprocessing":
        import os, tempfile, threading
        from multiprocessing.connection import Client, Listener
        for address in [("127.0.0.1", 0), os.path.join(tempfile.mkdtemp(), "mp")]:
            with Listener(address, authkey=b"k") as lst:
                def srv():
                    with lst.accept() as conn:
                        conn.send(conn.recv() * 2)
                t = threading.Thread(target=srv); t.start()
                with Client(lst.address, authkey=b"k") as c:
                    c.send(21); out.setdefault("replies", []).append(c.recv())
                t.join(20)
                out.setdefault("listeners", []).append(type(lst._listener._socket).__module__)

    elif which == "requests-werkzeug":
        import requests
        from werkzeug.serving import make_server
        from werkzeug.wrappers import Request, Response

        @Request.application
        def app(request):
            return Response("hi " + request.path)

        srv = make_server("127.0.0.1", 0, app, threaded=True)
        t = serve(srv)
        r = requests.get(f"http://127.0.0.1:{srv.server_port}/x", timeout=20)
        out["reply"] = [r.status_code, r.text]
        srv.shutdown()
        out["listener"] = type(srv.socket).__module__

    elif which == "trio":
        import functools, trio, warnings
        warnings.simplefilter("error")      # trio asks 65535: "as large as possible", no warning
        async def main():
            async def handler(stream):
                await stream.send_all((await stream.receive_some(100)).upper())
            async with trio.open_nursery() as nursery:
                listeners = await nursery.start(
                    functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
                port = listeners[0].socket.getsockname()[1]
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                await stream.send_all(b"trio")
                out["reply"] = (await stream.receive_some(100)).decode()
                out["listener"] = type(listeners[0].socket._sock).__module__
                nursery.cancel_scope.cancel()
        trio.run(main)

    print(json.dumps(out))
""")


def _swapped(which, *args):
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastsock.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    r = subprocess.run([sys.executable, "-c", _SWAPPED, which, *args], capture_output=True,
                       text=True, timeout=60, env=env, check=False)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_swapped_stdlib_modules_get_fastsock():
    out = _swapped("modules")
    assert all(out["bound"].values()), out["bound"]
    assert out["ssl_base"] is True


def test_swapped_http_server_and_urllib():
    out = _swapped("http")
    assert out == {"body": "/a/b", "listener": "fastsock", "accepted": ["fastsock"]}


def test_swapped_socketserver_unix():
    assert _swapped("socketserver-unix") == {"reply": "ABC\n", "accepted": ["fastsock"]}


def test_swapped_asyncio():
    out = _swapped("asyncio")
    assert out == {"listener": "fastsock", "client": "fastsock", "reply": "line\n",
                   "accepted": ["fastsock"]}


def test_swapped_ssl(tls_files):
    out = _swapped("ssl", *tls_files)
    assert out["listener_mro"] == ["ssl.SSLSocket", "fastsock.socket", "socket.socket"]
    assert out["accepted"] == "SSLSocket"
    assert out["reply"] == "OVER TLS" and out["version"].startswith("TLS")


def test_swapped_xmlrpc():
    assert _swapped("xmlrpc") == {"sum": 5, "listener": "fastsock"}


def test_swapped_multiprocessing_connection():
    out = _swapped("multiprocessing")
    assert out == {"replies": [42, 42], "listeners": ["fastsock", "fastsock"]}


def test_swapped_requests_on_werkzeug():
    pytest.importorskip("requests")
    pytest.importorskip("werkzeug")
    assert _swapped("requests-werkzeug") == {"reply": [200, "hi /x"], "listener": "fastsock"}


def test_swapped_trio():
    pytest.importorskip("trio")
    assert _swapped("trio") == {"reply": "TRIO", "listener": "fastsock"}
