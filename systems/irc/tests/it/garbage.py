"""Not an IRC server: for each connection, sends what a broken or hostile server might
(a notice, a line far over 512 bytes, a line that is not UTF-8, binary garbage, lines
that do not parse) and then nothing. For Flotilla's bad-input test.

    python3 garbage.py PORT
"""

import socket
import sys
import threading


def serve(conn):
    try:
        conn.sendall(b"NOTICE * :*** this is not really an IRC server\r\n")
        conn.sendall(b":srv NOTICE * :" + b"x" * 900 + b"\r\n")
        conn.sendall(b":srv NOTICE * :caf\xe9 au lait\r\n")
        conn.sendall(b"\x00\x01\x02\xff\xfe garbage\r\n")
        conn.sendall(b":prefix-only\r\n")
        conn.sendall(b"123456 not a numeric\r\n")
        conn.sendall(b":srv 999 * :a numeric nobody knows\r\n")
        # Then silence, with the connection left open.
        threading.Event().wait(600)
    except OSError:
        pass


def main():
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", int(sys.argv[1])))
    server.listen(16)
    print("ready", flush=True)
    while True:
        conn, _ = server.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
