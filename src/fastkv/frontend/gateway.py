"""etcd's JSON gateway on the client port."""
from __future__ import annotations


def handle(server, method, path, body, conn):
    conn.transport.write(b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 19\r\n"
                         b"Connection: close\r\n\r\n404 page not found\n")
    conn.transport.close()
