"""A human on IRC for Flotilla's tests: a real, independent client (the `irc` package
from PyPI) driven one command per line on stdin, answering one line per command on
stdout (`ok …`, `timeout …` or `error …`).

    python3 human.py HOST PORT NICK [BIND_ADDRESS]

Commands: join CH | part CH | say TARGET TEXT | notice TARGET TEXT | kick CH NICK REASON |
nick NEW | oper NAME PASS | kill NICK REASON | raw LINE | rawhex HEX (bytes as sent) |
wait_join CH PATTERN SECONDS | wait_text PATTERN SECONDS | nick? | quit [MESSAGE]
PATTERN is a shell-style pattern (fnmatch) for a nick or a message text.
"""

import fnmatch
import queue
import sys
import threading
import time

import irc.client
import irc.connection


def main():
    host, port, nick = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    bind = sys.argv[4] if len(sys.argv) > 4 else None
    reactor = irc.client.Reactor()
    factory = irc.connection.Factory(bind_address=(bind, 0)) if bind else irc.connection.Factory()
    # Lines from servers may not be UTF-8 in these tests; never crash on them.
    irc.client.ServerConnection.buffer_class.errors = "replace"
    conn = reactor.server().connect(host, port, nick, connect_factory=factory)
    joins = []  # (channel, nick)
    texts = []  # (source nick, target, text)
    welcomed = threading.Event()

    def on_welcome(c, e):
        welcomed.set()

    def on_join(c, e):
        joins.append((e.target.lower(), e.source.nick))

    def on_text(c, e):
        texts.append((e.source.nick if e.source else "", e.target, e.arguments[0] if e.arguments else ""))

    conn.add_global_handler("welcome", on_welcome)
    conn.add_global_handler("join", on_join)
    for kind in ("pubmsg", "privmsg", "pubnotice", "privnotice"):
        conn.add_global_handler(kind, on_text)

    commands = queue.Queue()

    def read_stdin():
        for line in sys.stdin:
            commands.put(line.rstrip("\n"))
        commands.put("quit")

    threading.Thread(target=read_stdin, daemon=True).start()

    deadline = time.time() + 20
    while not welcomed.is_set() and time.time() < deadline:
        reactor.process_once(0.05)
    if not welcomed.is_set():
        print("error no welcome from the server", flush=True)
        return
    print("ready " + conn.get_nickname(), flush=True)

    def wait_until(check, seconds):
        end = time.time() + float(seconds)
        while time.time() < end:
            if check():
                return True
            reactor.process_once(0.05)
        return check()

    while True:
        reactor.process_once(0.02)
        try:
            line = commands.get_nowait()
        except queue.Empty:
            continue
        word, _, rest = line.partition(" ")
        try:
            if word == "join":
                conn.join(rest)
                ok = wait_until(lambda: (rest.lower(), conn.get_nickname()) in joins, 10)
                print("ok" if ok else "timeout joining " + rest, flush=True)
            elif word == "part":
                conn.part(rest)
                print("ok", flush=True)
            elif word == "say":
                target, _, text = rest.partition(" ")
                conn.privmsg(target, text)
                print("ok", flush=True)
            elif word == "notice":
                target, _, text = rest.partition(" ")
                conn.notice(target, text)
                print("ok", flush=True)
            elif word == "kick":
                channel, victim, reason = rest.split(" ", 2)
                conn.kick(channel, victim, reason)
                print("ok", flush=True)
            elif word == "nick":
                conn.nick(rest)
                print("ok", flush=True)
            elif word == "nick?":
                print("ok " + conn.get_nickname(), flush=True)
            elif word == "oper":
                name, password = rest.split(" ", 1)
                conn.oper(name, password)
                print("ok", flush=True)
            elif word == "kill":
                victim, reason = rest.split(" ", 1)
                conn.send_raw("KILL %s :%s" % (victim, reason))
                print("ok", flush=True)
            elif word == "raw":
                conn.send_raw(rest)
                print("ok", flush=True)
            elif word == "rawhex":
                conn.socket.send(bytes.fromhex(rest))
                print("ok", flush=True)
            elif word == "wait_join":
                channel, pattern, seconds = rest.split(" ")
                ok = wait_until(
                    lambda: any(c == channel.lower() and fnmatch.fnmatch(n, pattern) for c, n in joins), seconds
                )
                print("ok" if ok else "timeout waiting for %s to join %s" % (pattern, channel), flush=True)
            elif word == "wait_text":
                pattern, seconds = rest.rsplit(" ", 1)
                found = []

                def seen():
                    for source, target, text in texts:
                        if fnmatch.fnmatch(text, pattern):
                            found.append("%s %s %s" % (source, target, text))
                            return True
                    return False

                ok = wait_until(seen, seconds)
                print("ok " + found[0] if ok else "timeout waiting for text " + pattern, flush=True)
            elif word == "quit":
                conn.quit(rest or "bye")
                reactor.process_once(0.2)
                print("ok", flush=True)
                return
            else:
                print("error unknown command " + word, flush=True)
        except Exception as exc:  # noqa: BLE001 - report, keep the client alive
            print("error %s: %s" % (type(exc).__name__, exc), flush=True)


if __name__ == "__main__":
    main()
