"""
The web front end (docs/WEB.md) over in-memory transports: the page and
its headers, login and the session cookie, the WebSocket's JSON protocol,
and its limits.
"""

import json
import re

from twisted.internet import defer
from twisted.trial.unittest import SkipTest, SynchronousTestCase
from wsproto.events import TextMessage

from chatproto.frontends.web import session as websession
from chatproto.frontends.web import socket as websocket
from chatproto.frontends.web.site import STATIC_DIR
from tests.web_support import ORIGIN, WebFixture

BLOCKED = "Your account is blocked due to multiple login failures. Please try again later"


class PageTests(SynchronousTestCase):
    def setUp(self):
        self.web = WebFixture(self)

    def test_page_and_headers(self):
        response = self.web.http("GET", "/")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.header("content-type"), "text/html; charset=utf-8")
        csp = response.header("content-security-policy")
        self.assertIn("script-src 'self'", csp)
        self.assertIn("frame-ancestors 'none'", csp)
        self.assertNotIn("unsafe-inline", csp)
        self.assertEqual(response.header("x-content-type-options"), "nosniff")
        html = response.body.decode()
        self.assertIn("<title>chatproto</title>", html)
        # No inline script anywhere: every <script> has a src and no body; no on* attributes.
        for match in re.finditer(r"<script([^>]*)>(.*?)</script>", html, re.S):
            self.assertIn('src="/static/', match.group(1))
            self.assertEqual(match.group(2).strip(), "")
        self.assertIsNone(re.search(r"\son[a-z]+\s*=", html))
        self.assertNotIn("http://", html.replace("http://www.w3.org", ""))  # nothing from a CDN

    def test_assets(self):
        for name, kind in [("app.js", "text/javascript"), ("connection.js", "text/javascript"),
                           ("dom.js", "text/javascript"), ("app.css", "text/css"),
                           ("icon.svg", "image/svg+xml")]:
            response = self.web.http("GET", f"/static/{name}")
            self.assertEqual(response.status, 200, name)
            self.assertTrue(response.header("content-type").startswith(kind), name)
            self.assertIsNotNone(response.header("content-security-policy"))

    def test_scripts_insert_text_only(self):
        """The page's scripts never parse HTML: no innerHTML, insertAdjacentHTML, document.write, eval."""
        import os

        for name in os.listdir(STATIC_DIR):
            if name.endswith(".js"):
                with open(os.path.join(STATIC_DIR, name)) as f:
                    source = f.read()
                for bad in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                            "new Function"):
                    self.assertNotIn(bad, source, name)

    def test_idle_http_connection_is_closed(self):
        _channel, transport = self.web.connect_http()
        self.web.clock.advance(59)
        self.assertFalse(transport.disconnecting)
        self.web.clock.advance(2)
        self.assertTrue(transport.disconnecting)

    def test_unknown_paths(self):
        self.assertEqual(self.web.http("GET", "/nothing").status, 404)
        self.assertEqual(self.web.http("GET", "/static/nothing.js").status, 404)


class LoginTests(SynchronousTestCase):
    def setUp(self):
        self.web = WebFixture(self)

    def test_success_sets_a_strict_http_only_cookie(self):
        response = self.web.login("Yoda", "wise@!man")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.json(), {"ok": True, "username": "Yoda"})
        (cookie,) = response.all("set-cookie")
        self.assertRegex(cookie, r"^chatproto_session=[A-Za-z0-9_-]{40,};")
        self.assertIn("HttpOnly", cookie)
        self.assertIn("SameSite=strict", cookie)
        self.assertIn("Path=/", cookie)
        token = response.cookie_value("chatproto_session")
        self.assertNotIn(token, response.body.decode())  # only in the cookie
        self.assertEqual(response.header("cache-control"), "no-store")
        session = self.web.http("GET", "/session", headers={"Cookie": f"chatproto_session={token}"})
        self.assertEqual(session.json(), {"ok": True, "username": "Yoda"})

    def test_a_login_whose_page_went_away_meanwhile_does_not_hold_a_session(self):
        # The browser left (a reload, a closed tab) while its login was being recorded: nobody
        # has its cookie, so it must not keep one of the account's sessions (--max-sessions 1:
        # the next login, here or anywhere, would be refused for two minutes).
        web = WebFixture(self, realm_options={"max_sessions": 1})
        channel, _transport = web.connect_http()
        body = json.dumps({"username": "Yoda", "password": "wise@!man"}).encode()
        head = (b"POST /login HTTP/1.1\r\nHost: localhost:8080\r\nOrigin: http://localhost:8080\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
        channel.dataReceived(head + body)
        channel.connectionLost(None)  # gone before the login is recorded (the end of this turn)
        web.clock.advance(0)
        self.assertEqual(web.core.connect().send("LOGIN Yoda wise@!man 6001"), ["OK Welcome to chatproto!"])

    def test_spec_texts_and_lockout(self):
        self.assertEqual(self.web.login("Nobody", "x").json()["error"], "Invalid Username. Please try again")
        first = self.web.login("Yoda", "wrong")
        self.assertEqual(first.status, 403)
        self.assertEqual(first.json(), {"ok": False, "code": "wrong-password",
                                        "error": "Invalid Password. Please try again"})
        self.assertIsNone(first.header("set-cookie"))
        self.web.login("Yoda", "wrong")
        self.assertEqual(self.web.login("Yoda", "wrong").json()["error"],
                         "Invalid Password. Your account has been blocked. Please try again later")
        self.assertEqual(self.web.login("Yoda", "wise@!man").json()["error"], BLOCKED)
        self.web.clock.advance(10)
        self.assertEqual(self.web.login("Yoda", "wise@!man").status, 200)
        self.web.core.chat.max_sessions = 1  # --max-sessions 1: one login per account
        self.assertEqual(self.web.login("Yoda", "wise@!man").json()["error"],
                         "This account is already logged in")
        self.web.core.chat.max_sessions = 2  # a second session, as many as allowed
        self.assertEqual(self.web.login("Yoda", "wise@!man").status, 200)
        self.assertEqual(self.web.login("Yoda", "wise@!man").json()["error"],
                         "This account is already logged in")

    def test_refused_requests(self):
        foreign = self.web.login("Yoda", "wise@!man", origin="http://evil.example")
        self.assertEqual(foreign.status, 403)
        self.assertEqual(foreign.json()["error"], "Forbidden: foreign Origin")
        form = self.web.http("POST", "/login", raw_body=b"username=Yoda&password=wise%40%21man",
                             headers={"Content-Type": "application/x-www-form-urlencoded", "Origin": ORIGIN})
        self.assertEqual(form.status, 415)
        big = self.web.http("POST", "/login", raw_body=b"{" + b" " * 20000 + b"}",
                            headers={"Content-Type": "application/json"})
        self.assertEqual(big.status, 413)
        junk = self.web.http("POST", "/login", raw_body=b"[1, 2]", headers={"Content-Type": "application/json"})
        self.assertEqual(junk.status, 400)
        deep = self.web.http("POST", "/login", raw_body=b"[" * 5000, headers={"Content-Type": "application/json"})
        self.assertEqual((deep.status, deep.json()["code"]), (400, "bad-request"))  # (nested past json's depth)
        self.assertEqual(self.web.http("GET", "/login").status, 405)
        self.assertEqual(self.web.http("GET", "/session").json(), {"ok": False})

    def test_logout_ends_the_session(self):
        yoda = self.web.browser("Yoda", "wise@!man")
        response = self.web.http("POST", "/logout", {}, headers={
            "Origin": ORIGIN, "Cookie": f"chatproto_session={yoda.token}"})
        self.assertEqual(response.json(), {"ok": True, "text": "Bye, Yoda!"})
        self.assertRegex(response.header("set-cookie"), r"^chatproto_session=;.*Max-Age=0")
        self.assertEqual(yoda.next("logged_out")["text"], "Bye, Yoda!")
        self.assertTrue(yoda.transport.disconnecting)
        self.assertEqual(self.web.ws(yoda.token).status, 401)
        self.assertNotIn("Yoda", [u.name for u in self.web.chat.active_users()])
        # The account may log in again at once.
        self.assertEqual(self.web.login("Yoda", "wise@!man").status, 200)


class HandshakeTests(SynchronousTestCase):
    def setUp(self):
        self.web = WebFixture(self)
        self.token = self.web.token("Yoda", "wise@!man")

    def test_foreign_origin_refused_before_the_handshake(self):
        client = self.web.ws(self.token, origin="http://evil.example")
        self.assertFalse(client.accepted)
        self.assertEqual(client.status, 403)

    def test_without_a_session(self):
        self.assertEqual(self.web.ws(None).status, 401)
        self.assertEqual(self.web.ws("made-up").status, 401)

    def test_hello(self):
        client = self.web.ws(self.token)
        self.assertTrue(client.accepted)
        self.assertIsInstance(client.transport.protocol, websocket.WebSocketConnection)  # the HTTP channel is gone
        hello = client.next("hello")
        self.assertEqual(hello["username"], "Yoda")
        self.assertEqual([u["name"] for u in hello["active"]], ["Yoda"])
        self.assertIn("Hans", hello["accounts"])
        self.assertEqual(hello["groups"], [])
        self.assertEqual(hello["unread"], {})


class ChatTests(SynchronousTestCase):
    def setUp(self):
        self.web = WebFixture(self)
        self.yoda = self.web.browser("Yoda", "wise@!man")
        self.hans = self.web.browser("Hans", "falcon*solo")

    def test_presence(self):
        self.assertEqual(self.yoda.next("user_online")["username"], "Hans")
        self.web.http("POST", "/logout", {}, headers={"Cookie": f"chatproto_session={self.hans.token}"})
        self.assertEqual(self.yoda.next("user_offline")["username"], "Hans")

    def test_private_message_both_ways(self):
        reply = self.yoda.request("send", to="Hans", text="<img src=x onerror=alert(1)>")
        self.assertTrue(reply["ok"], reply)
        message = reply["message"]
        self.assertEqual((message["kind"], message["sender"], message["recipient"], message["text"]),
                         ("private", "Yoda", "Hans", "<img src=x onerror=alert(1)>"))
        got = self.hans.next("message")
        self.assertEqual(got["message"], message)
        self.assertEqual(got["unread"], 1)
        self.assertTrue(self.hans.request("send", to="Yoda", text="hi")["ok"])
        self.assertEqual(self.yoda.next("message")["message"]["text"], "hi")
        history = self.yoda.request("history", **{"with": "Hans"})
        self.assertEqual([m["text"] for m in history["messages"]], ["<img src=x onerror=alert(1)>", "hi"])

    def test_pipelined_sends_are_answered_once_durable_in_order(self):
        """Private sends pipelined in one read: no reply and no delivery before their batch is
        committed, then every reply in the order of the requests, with its message's SEQ."""
        held = []
        database = self.web.core.database

        def slow_commit(ops):
            database.commit_now(ops)
            d = defer.Deferred()
            held.append(d)
            return d

        self.patch(database, "commit", slow_commit)
        self.hans.events()
        ws = self.yoda.ws
        self.yoda.write(b"".join(ws.send(TextMessage(json.dumps({"id": 500 + n, "type": "send", "to": "Hans",
                                                                    "text": f"p{n}"})))
                                 for n in range(20)))
        self.assertEqual([m for m in self.yoda.events() if m["type"] == "reply"], [])
        self.assertEqual([m for m in self.hans.events() if m["type"] == "message"], [])
        while held:
            held.pop(0).callback(None)
        replies = [m for m in self.yoda.events() if m["type"] == "reply"]
        self.assertEqual([(r["id"], r["ok"], r["message"]["text"]) for r in replies],
                         [(500 + n, True, f"p{n}") for n in range(20)])
        seqs = [r["message"]["seq"] for r in replies]
        self.assertEqual(seqs, sorted(seqs))
        got = [m["message"]["text"] for m in self.hans.events() if m["type"] == "message"]
        self.assertEqual(got, [f"p{n}" for n in range(20)])

    def test_errors_are_spec_texts(self):
        def error(**fields):
            reply = self.yoda.request("send", **fields)
            self.assertFalse(reply["ok"])
            return reply["error"]

        self.assertEqual(error(to="Yoda", text="x"), "You cannot send a message to yourself")
        self.assertEqual(error(to="Nobody", text="x"), "No such user: Nobody")
        self.assertEqual(error(to="leia", text="x"), "leia is not active")
        self.assertEqual(error(to="Hans", text="   "), "A message cannot be empty.")
        self.assertEqual(error(group="Nope", text="x"), "The group chat does not exist.")
        self.assertEqual(error(text="x"), "Invalid request: give either to or group")
        self.assertEqual(error(to="Hans", group="Jedi", text="x"), "Invalid request: give either to or group")
        for to in ("", "H" * 257, 5, ["Hans"]):
            self.assertEqual(error(to=to, text="x"), "Invalid request: to must be a non-empty string")
        self.assertEqual(error(to="Hans", text=5), "Invalid request: text must be a string")
        reply = self.yoda.request("join", group="Nope")
        self.assertEqual(reply["error"], "Groupchat (Name: Nope) does not exist.")
        reply = self.yoda.request("frobnicate")
        self.assertEqual((reply["code"], reply["error"]), ("unknown-type", "Unknown request type: frobnicate"))

    def test_bad_frames(self):
        self.yoda.send_raw("not json")
        self.assertEqual(self.yoda.next("error")["error"], "Invalid message: not a JSON object")
        self.yoda.send_raw("[1]")
        self.assertEqual(self.yoda.next("error")["code"], "bad-json")
        self.yoda.write(self.yoda.ws.send(__import__("wsproto").events.BytesMessage(b"\x00\x01")))
        self.assertEqual(self.yoda.next("error")["code"], "bad-json")
        self.assertFalse(self.yoda.transport.disconnecting)

    def test_json_nested_too_deep_is_bad_json(self):
        """Arrays nested deeper than Python's decoder goes: the same bad-json error as any other
        unreadable request, and the tab goes on (no exception out of the socket)."""
        self.yoda.events()
        self.yoda.send_raw("[" * 50000)
        self.assertEqual(self.yoda.next("error")["error"], "Invalid message: not a JSON object")
        self.assertTrue(self.yoda.request("send", to="Hans", text="still here")["ok"])
        self.assertFalse(self.yoda.transport.disconnecting)

    def test_frames_in_pieces_pipelined_and_fragmented(self):
        from wsproto.events import Ping, TextMessage

        ws = self.yoda.ws
        frames = [ws.send(TextMessage(json.dumps({"id": n, "type": "ping"}))) for n in (101, 102, 103)]
        data = frames[0] + frames[1] + ws.send(Ping(b"x")) + frames[2]
        for i in range(len(data)):  # a byte at a time
            self.yoda.write(data[i:i + 1])
        # A fragmented message, with a ping in the middle (wsproto's path), then a whole one.
        self.yoda.write(ws.send(TextMessage('{"id": 104, "type":', message_finished=False)))
        self.yoda.write(ws.send(Ping(b"y")))
        self.yoda.write(ws.send(TextMessage(' "ping"}', message_finished=True)))
        self.yoda.write(ws.send(TextMessage(json.dumps({"id": 105, "type": "ping"}))))
        ids = [m["id"] for m in self.yoda.messages if m["type"] == "reply"]
        self.assertEqual(ids, [101, 102, 103, 104, 105])
        self.assertEqual(self.yoda.request("send", to="Hans", text="é ✓ 🚀")["message"]["text"], "é ✓ 🚀")

    def test_invalid_frames_are_refused_by_wsproto(self):
        self.yoda.write(b"\x81\x82abcd" + bytes([0xFF ^ ord("a"), 0xFE ^ ord("b")]))  # not UTF-8
        self.assertEqual(self.yoda.closed, 1007)

    def test_unmask(self):
        self.assertEqual(websocket.unmask(b"", b"abcd"), b"")
        for n in (1, 4, 5, 127, 1000):
            payload = bytes(range(256)) * 4
            payload = payload[:n]
            expected = bytes(b ^ b"\x01\x80\xff\x10"[i % 4] for i, b in enumerate(payload))
            self.assertEqual(websocket.unmask(payload, b"\x01\x80\xff\x10"), expected)

    def test_frame_ends_at_every_cut(self):
        """Frames of each length form (7-bit, 16-bit, 64-bit), masked or not, back to back: the
        end of the first is known once it is whole, never before."""
        for size in (0, 1, 125, 126, 65535, 65536):
            for mask in (b"", b"\x01\x02\x03\x04"):
                bit = 0x80 if mask else 0
                if size < 126:
                    head = bytes((0x81, bit | size))
                elif size < 65536:
                    head = bytes((0x81, bit | 126)) + size.to_bytes(2, "big")
                else:
                    head = bytes((0x81, bit | 127)) + size.to_bytes(8, "big")
                frame = head + mask + b"x" * size
                stream = b"ab" + frame + b"\x81\x00"
                for cut in sorted({2, 3, 3 + len(head), 2 + len(frame) - 1, 2 + len(frame), len(stream)}):
                    want = 2 + len(frame) if cut >= 2 + len(frame) else 0
                    self.assertEqual(websocket.frame_end(stream[:cut], 2), want, (size, mask, cut))

    def test_a_request_after_sends_in_one_read_comes_after_them(self):
        """The private sends of one read go to the core together, but never after a request that
        followed them: Hans gets a private message, a group message and a private message sent
        in one read in that order."""
        self.yoda.request("create_group", name="Jedi", members=["Hans"])
        self.assertTrue(self.hans.request("join", group="Jedi")["ok"])
        self.hans.events()
        ws = self.yoda.ws
        frames = [{"id": 1, "type": "send", "to": "Hans", "text": "first"},
                  {"id": 2, "type": "send", "group": "Jedi", "text": "second"},
                  {"id": 3, "type": "delete", "seq": 1},
                  {"id": 4, "type": "send", "to": "Hans", "text": "fourth"}]
        self.yoda.write(b"".join(ws.send(TextMessage(json.dumps(f))) for f in frames))
        replies = {m["id"]: m for m in self.yoda.events() if m["type"] == "reply"}
        self.assertEqual(sorted(replies), [1, 2, 3, 4])
        self.assertEqual([m["message"]["text"] for m in self.hans.events() if m["type"] == "message"],
                         ["first", "second", "fourth"])
        self.assertEqual((replies[1]["message"]["seq"], replies[3]["ok"]), (1, True))  # (deleted: it came first)

    def test_server_frames_of_every_length_form(self):
        """The server's text frames: 7-bit, 16-bit and 64-bit lengths, as a browser reads them."""
        from wsproto.frame_protocol import FrameProtocol

        for size in (0, 125, 126, 65535, 65536):
            reader = FrameProtocol(client=True, extensions=[])
            reader.receive_bytes(websocket.text_frame("é" * (size // 2) + "x" * (size % 2)))
            (frame,) = list(reader.received_frames())
            self.assertEqual((frame.payload, frame.frame_finished), ("é" * (size // 2) + "x" * (size % 2), True))

    def test_lone_surrogates_become_question_marks(self):
        self.yoda.send_raw('{"id": 900, "type": "send", "to": "Hans", "text": "a\\ud800b"}')
        (reply,) = [m for m in self.yoda.messages if m.get("id") == 900]
        self.assertEqual(reply["message"]["text"], "a?b")
        self.assertEqual(self.hans.next("message")["message"]["text"], "a?b")

    def test_line_breaks_become_spaces(self):
        reply = self.yoda.request("send", to="Hans", text="one\ntwo\r\nthree")
        self.assertEqual(reply["message"]["text"], "one two  three")

    def test_text_and_frame_limits(self):
        reply = self.yoda.request("send", to="Hans", text="é" * (websocket.MAX_TEXT // 2 + 1))
        self.assertEqual(reply["error"], "Message too long")
        self.yoda.send_raw(json.dumps({"id": 1, "type": "ping", "pad": "x" * websocket.MAX_FRAME}))
        self.assertEqual(self.yoda.next("error")["error"], "Message too long")
        self.assertTrue(self.yoda.request("ping")["ok"])

    def test_requests_are_read_as_sent_without_the_c_unmasking(self):
        """Without websockets' C function (a build without it), the pure-Python unmasking reads
        every request alike: short and long payloads."""
        self.patch(websocket, "_apply_mask", None)
        self.test_requests_of_every_short_length_are_read_as_sent()
        self.hans.events()
        for size in (126, 200, 70000 // 3):
            self.assertEqual(self.yoda.request("send", to="Hans", text="é" * size)["message"]["text"], "é" * size)
        self.assertEqual([m["message"]["text"] for m in self.hans.events() if m["type"] == "message"],
                         ["é" * size for size in (126, 200, 70000 // 3)])

    def test_unmask_with_and_without_the_c_function(self):
        """RFC 6455 section 5.3, both ways: each byte XOR the key's byte at its place modulo 4."""
        import importlib.util
        import os

        if importlib.util.find_spec("websockets") is None:  # (a venv made before it was a dependency)
            raise SkipTest("websockets is not installed: pip install '.[test]' again")
        c_function = websocket._apply_mask
        self.assertIsNotNone(c_function)  # (installed with the server: the pure-Python path is the fallback)
        for n in (0, 1, 3, 4, 5, 125, 126, 1000, 65536):
            payload, key = os.urandom(n), os.urandom(4)
            expected = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
            for function in (c_function, None):
                websocket._apply_mask = function
                try:
                    self.assertEqual(websocket.unmask(payload, key), expected, (n, function))
                finally:
                    websocket._apply_mask = c_function

    def test_printable_ascii_text_limits(self):
        """Plain ASCII text (read without the cleaning pass) has the same limits as any text."""
        reply = self.yoda.request("send", to="Hans", text="x" * websocket.MAX_TEXT)
        self.assertEqual(len(reply["message"]["text"]), websocket.MAX_TEXT)
        self.assertEqual(self.yoda.request("send", to="Hans", text="x" * (websocket.MAX_TEXT + 1))["error"],
                         "Message too long")
        for text in ("", " ", "   ", "\t", " \x7f "):
            self.assertEqual(self.yoda.request("send", to="Hans", text=text)["code"], "empty-message", repr(text))
        self.assertEqual(self.yoda.request("send", to="Hans", text="a\x7fb")["message"]["text"], "a b")
        self.assertEqual(self.yoda.request("send", to="Hans", text=5)["code"], "bad-request")

    def test_requests_of_every_short_length_are_read_as_sent(self):
        """A browser's frame of each payload length under 126 bytes (one length byte), with
        a random masking key (wsproto's) and with one that keeps ASCII ASCII, non-ASCII text
        too: read as sent."""
        self.hans.events()
        sent = []
        for n in range(126):
            pad = n - len(f'{{"id":{n},"type":"send","to":"Hans","text":""}}')
            if pad < 1:
                self.yoda.send_raw(" " * n)  # blank: not JSON
                self.assertEqual(self.yoda.next("error")["code"], "bad-json")
                continue
            for text in ("é" * (pad // 2) + "x" * (pad % 2), "x" * pad):
                raw = json.dumps({"id": n, "type": "send", "to": "Hans", "text": text},
                                 ensure_ascii=False, separators=(",", ":")).encode("utf-8")
                self.assertEqual(len(raw), n)
                self.yoda.send_raw(raw.decode("utf-8"))
                key = b"\x01\x02\x03\x04"
                self.yoda.write(bytes((0x81, 0x80 | n)) + key + bytes(b ^ key[i % 4] for i, b in enumerate(raw)))
                sent += [text, text]
        self.assertEqual([m["message"]["text"] for m in self.hans.events() if m["type"] == "message"], sent)

    def endless_fragment(self, between=None):
        """Fragments of one text message that never ends, each followed by C{between} (a frame)."""
        from wsproto.events import TextMessage

        chunk = "x" * 60000
        for _ in range(websocket.MAX_BUFFERED // len(chunk) + 2):
            if self.yoda.transport.disconnecting:
                break
            self.yoda.write(self.yoda.ws.send(TextMessage(chunk, message_finished=False)))
            if between is not None:
                self.yoda.write(self.yoda.ws.send(between))
        return self.yoda.transport.disconnecting

    def test_endless_fragment_is_cut_off(self):
        self.assertTrue(self.endless_fragment())

    def test_endless_fragment_with_pongs_between_is_cut_off_too(self):
        from wsproto.events import Pong

        self.assertTrue(self.endless_fragment(between=Pong(b"")))  # an unasked pong counts no less

    def test_groups(self):
        reply = self.yoda.request("create_group", name="Jedi", members=["Hans"])
        self.assertEqual(reply["group"]["members"], [{"name": "Yoda", "joined": True},
                                                     {"name": "Hans", "joined": False}])
        invited = self.hans.next("invited")
        self.assertEqual((invited["group"], invited["by"]), ("Jedi", "Yoda"))
        self.assertEqual(self.hans.request("send", group="Jedi", text="x")["error"],
                         "Please join the group before sending messages.")
        self.assertEqual(self.hans.request("history", group="Jedi")["error"],
                         "Please join the group before reading its history.")
        self.assertTrue(self.hans.request("join", group="jedi")["ok"])
        self.assertEqual(self.yoda.next("member_joined")["username"], "Hans")
        self.assertEqual(self.hans.request("join", group="Jedi")["error"],
                         "You have already joined the group chat Jedi.")
        for n in range(1, 6):
            self.assertTrue(self.yoda.request("send", group="Jedi", text=f"m{n}")["ok"])
        self.assertEqual(self.hans.events()[-1]["unread"], 5)
        older = self.hans.request("history", group="Jedi", limit=2, before=4)
        self.assertEqual([m["text"] for m in older["messages"]], ["m2", "m3"])
        self.assertTrue(self.hans.request("leave", group="Jedi")["ok"])
        self.assertEqual(self.yoda.next("member_left")["username"], "Hans")
        self.assertEqual(self.yoda.request("create_group", name="bad name!", members=["Hans"])["error"],
                         "Group name must be 1-32 letters and digits")
        self.assertEqual(self.yoda.request("create_group", name="jedi", members=["Hans"])["error"],
                         "A group chat (Name: jedi) already exists")

    def test_members_changed_reaches_an_invited_member(self):
        """
        Hans is only invited to Jedi: a join from the line protocol, an
        invitation and a leave each bring his page the members now; leia,
        invited on the line protocol, is shown nothing of them.
        """
        luke = self.web.core.login("luke", "jedi*knight", 6001)
        leia = self.web.core.login("leia", "alderaan", 6002)
        self.yoda.request("create_group", name="Jedi", members=["Hans", "luke"])
        self.assertEqual(self.hans.next("invited")["group"], "Jedi")
        luke.output()

        def members_now():
            changed = [e for e in self.hans.events() if e["type"] == "members_changed"]
            self.assertEqual(len(changed), 1, changed)
            self.assertEqual(changed[0]["group"], "Jedi")
            return [(m["name"], m["joined"]) for m in changed[0]["members"]]

        self.assertEqual(luke.send("/joingroup Jedi"), ["OK Joined the group chat: Jedi successfully."])
        self.assertEqual(members_now(), [("Yoda", True), ("Hans", False), ("luke", True)])
        self.assertTrue(self.yoda.request("invite", group="Jedi", username="leia")["ok"])
        self.assertEqual(members_now(), [("Yoda", True), ("Hans", False), ("luke", True), ("leia", False)])
        self.assertEqual(leia.output(), [
            "NOTICE You have been invited to the group chat Jedi by Yoda. Type /joingroup Jedi to join."])
        self.assertEqual(luke.send("/leavegroup Jedi"), ["OK You have left the group chat Jedi."])
        self.assertEqual(members_now(), [("Yoda", True), ("Hans", False), ("leia", False)])
        self.assertEqual(leia.output(), [])

    def test_invite(self):
        self.yoda.request("create_group", name="Jedi", members=["Hans"])
        luke = self.web.browser("luke", "jedi*knight")
        reply = self.yoda.request("invite", group="Jedi", username="luke")
        self.assertTrue(reply["ok"], reply)
        self.assertEqual(luke.next("invited")["group"], "Jedi")
        self.assertEqual(luke.request("state")["groups"][0]["name"], "Jedi")

    def test_delete_own_messages(self):
        seq = self.yoda.request("send", to="Hans", text="oops")["message"]["seq"]
        self.assertEqual(self.hans.request("delete", seq=seq)["error"], "You can only delete your own messages.")
        self.assertEqual(self.yoda.request("delete", seq=seq)["text"], f"Message {seq} deleted.")
        told = self.hans.next("message_deleted")  # the recipient's page: shown [deleted] there
        self.assertEqual((told["seq"], told["by"], told["message"]["recipient"], told["message"]["text"]),
                         (seq, "Yoda", "Hans", "[deleted]"))
        history = self.hans.request("history", **{"with": "Yoda"})["messages"]
        self.assertEqual([m["text"] for m in history], ["[deleted]"])
        self.yoda.request("create_group", name="Jedi", members=["Hans"])
        self.hans.request("join", group="Jedi")
        gseq = self.yoda.request("send", group="Jedi", text="group oops")["message"]["seq"]
        self.assertEqual(self.yoda.request("delete", seq=gseq, group="Jedi")["text"], f"Message {gseq} deleted.")
        deleted = self.hans.next("message_deleted")
        self.assertEqual((deleted["group"], deleted["seq"], deleted["by"]), ("Jedi", gseq, "Yoda"))

    def test_change_password(self):
        reply = self.yoda.request("change_password", current="nope", new="x")
        self.assertEqual(reply["error"], "Current password is incorrect.")
        reply = self.yoda.request("change_password", current="wise@!man", new="new pass")
        self.assertEqual(reply["error"], "A password cannot contain whitespace.")
        reply = self.yoda.request("change_password", current="wise@!man", new="better")
        self.assertEqual(reply["text"], "Your password has been changed.")

    def test_unread_counts_survive_a_reload_and_read_clears_them(self):
        self.yoda.request("send", to="Hans", text="one")
        self.yoda.request("send", to="Hans", text="two")
        self.hans.drop()
        again = self.web.ws(self.hans.token)
        self.assertEqual(again.next("hello")["unread"], {"user:Yoda": 2})
        other_tab = self.web.ws(self.hans.token)
        other_tab.next("hello")
        self.assertTrue(again.request("read", kind="user", name="Yoda")["ok"])
        self.assertEqual(other_tab.next("read")["conversation"], "user:Yoda")
        self.assertEqual(self.web.ws(self.hans.token).next("hello")["unread"], {})

    def test_read_of_a_user_named_like_a_group_is_refused_and_marks_nothing(self):
        self.yoda.request("create_group", name="Jedi", members=["Hans"])
        self.hans.request("join", group="Jedi")
        self.yoda.request("send", group="Jedi", text="may the force")
        other_tab = self.web.ws(self.hans.token)
        self.assertEqual(other_tab.next("hello")["unread"], {"group:jedi": 1})
        reply = self.hans.request("read", kind="user", name="#Jedi")
        self.assertEqual((reply["ok"], reply["code"]), (False, "no-such-user"))
        self.assertEqual(reply["error"], "No such user: #Jedi")
        self.assertEqual([e for e in other_tab.events() if e["type"] == "read"], [])
        self.assertEqual(self.web.ws(self.hans.token).next("hello")["unread"], {"group:jedi": 1})

    def test_own_message_reaches_the_other_tabs(self):
        second = self.web.ws(self.yoda.token)
        second.next("hello")
        self.yoda.request("send", to="Hans", text="from tab one")
        self.assertEqual(second.next("message")["message"]["text"], "from tab one")

    def test_grace_after_the_last_tab_closes(self):
        self.hans.drop()
        self.web.advance(60, self.yoda)
        self.assertIn("Hans", [u.name for u in self.web.chat.active_users()])
        back = self.web.ws(self.hans.token)
        self.assertTrue(back.accepted)
        back.drop()
        self.web.advance(121, self.yoda)
        self.assertNotIn("Hans", [u.name for u in self.web.chat.active_users()])
        self.assertEqual(self.yoda.next("user_offline")["username"], "Hans")
        self.assertEqual(self.web.ws(self.hans.token).status, 401)

    def test_core_ends_the_session(self):
        second_tab = self.web.ws(self.hans.token)
        second_tab.next("hello")
        self.web.chat.end_session("Hans", "Kicked by the administrator")  # every session of Hans
        self.assertEqual(second_tab.next("ended")["text"], "Kicked by the administrator")
        self.assertEqual(self.hans.next("ended")["text"], "Kicked by the administrator")
        self.assertTrue(self.hans.transport.disconnecting)
        self.assertEqual(self.web.ws(self.hans.token).status, 401)

    def test_shutdown_tells_every_page(self):
        self.web.chat.shutdown("Server shutting down")  # what the server does as it stops
        self.web.frontend.stop()
        self.assertEqual(self.yoda.next("ended")["text"], "Server shutting down")
        self.assertEqual(self.hans.next("ended")["text"], "Server shutting down")
        self.assertEqual(self.web.chat.active_users(), [])


class ServerStopTests(SynchronousTestCase):
    def test_server_stop_tells_every_tab_and_waits_for_it(self):
        """As with line and IRC clients: every tab is told and closed, and the server's stop waits
        for its WebSocket to be gone (at most the grace period, then it is cut)."""
        from chatproto.frontends.web.options import web_front_ends
        from chatproto.server.app import SHUTDOWN_GRACE_SECONDS, ChatService

        web = WebFixture(self)
        service = ChatService("credentials.txt", "data", 3, clock=web.clock)
        service.chat = web.chat  # the server app's own web front end over the fixture's realm
        web.site = web_front_ends("tcp:0", 1 << 20)[0].make_factory(service)
        yoda = web.browser("Yoda", "wise@!man")
        hans = web.browser("Hans", "falcon*solo")
        stopped = service.stopService()
        self.assertEqual(yoda.next("ended")["text"], "Server shutting down")
        self.assertEqual(hans.next("ended")["text"], "Server shutting down")
        self.assertEqual(yoda.closed, 1000)
        self.assertNoResult(stopped)  # both tabs still open
        yoda.drop()
        self.assertNoResult(stopped)  # Hans's tab still open
        web.clock.advance(SHUTDOWN_GRACE_SECONDS)
        self.successResultOf(stopped)
        self.assertTrue(hans.transport.disconnecting)


class TabTests(SynchronousTestCase):
    """Each tab (each WebSocket) of a browser is a core session of its own."""

    def setUp(self):
        self.web = WebFixture(self, realm_options={"max_sessions": 3})
        self.tab1 = self.web.browser("Yoda", "wise@!man")
        self.tab2 = self.web.ws(self.tab1.token)
        self.tab2.next("hello")
        self.hans = self.web.core.login("Hans", "falcon*solo", 6003)

    def sessions(self, line_client):
        return [re.sub(r"active since .*?( \(this one\))?\.$", "T", line)
                for line in line_client.send("/sessions")]

    def test_a_send_in_one_tab_reaches_the_other_once_through_the_core(self):
        yoda = self.web.core.login("Yoda", "wise@!man", 6001)
        self.assertEqual(self.sessions(yoda), ["DATA 1, web, 127.0.0.1, 0, T", "DATA 2, web, 127.0.0.1, 0, T",
                                               "DATA 3, line, 127.0.0.1, 6001, T", "OK"])
        self.tab1.events(), self.tab2.events()
        sent = self.tab1.request("send", to="Hans", text="from tab one")["message"]
        self.assertRegex(yoda.output()[0], "^SENT .*, to Hans: from tab one$")
        got = [e for e in self.tab2.events() if e["type"] == "message"]
        self.assertEqual([(e["message"]["seq"], e["message"]["text"]) for e in got], [(sent["seq"], "from tab one")])
        self.assertNotIn("unread", got[0])
        self.assertEqual(self.tab1.events(), [])  # its reply carries it; no echo
        self.hans.send("/msgto Yoda to every tab")
        for tab in (self.tab1, self.tab2):
            (message,) = [e for e in tab.events() if e["type"] == "message"]
            self.assertEqual((message["message"]["text"], message["unread"]), ("to every tab", 1))

    def test_away_and_read_reach_the_other_tab_through_the_core(self):
        self.assertEqual(self.tab1.request("away", text="lunch")["text"], "You are marked as away.")
        self.assertEqual(self.tab2.next("away")["text"], "lunch")
        self.hans.send("/msgto Yoda one")
        self.assertTrue(self.tab1.request("read", kind="user", name="Hans")["ok"])
        self.assertEqual(self.tab2.next("read")["conversation"], "user:Hans")
        self.assertEqual(self.tab2.request("state")["unread"], {})

    def test_a_tab_whose_state_is_slow_to_come_holds_a_bounded_number_of_events(self):
        """Events wait for the tab's first state (the hello); past a bound the tab is closed as
        a slow reader would be (the page reconnects), and the other tabs carry on."""
        self.patch(websocket, "MAX_EARLY_EVENTS", 3)
        held = defer.Deferred()
        real = self.web.chat.groups_of
        self.patch(self.web.chat, "groups_of", lambda name: held)
        tab3 = self.web.ws(self.tab1.token)
        self.patch(self.web.chat, "groups_of", real)
        self.tab1.events()
        for i in range(3):
            self.hans.send(f"/msgto Yoda early {i}")
        self.assertIsNone(tab3.closed)
        self.hans.send("/msgto Yoda one too many")
        tab3.pump()
        self.assertEqual(tab3.closed, 1013)  # try again later
        texts = [e["message"]["text"] for e in self.tab1.events() if e["type"] == "message"]
        self.assertEqual(texts, ["early 0", "early 1", "early 2", "one too many"])
        held.callback([])  # the state coming after the close sends nothing
        self.assertEqual([e for e in tab3.events() if e["type"] == "hello"], [])

    def hold_unread_counts(self, run_now=False):
        """The storage's unread counts answer only when the test says: C{release()} counts then
        (C{run_now}: counted at once, the answer held)."""
        storage = self.web.chat.storage
        real = storage.unread_counts
        held = []

        def later(username, groups):
            d = defer.Deferred()
            if run_now:
                rows = self.successResultOf(real(username, groups))
                held.append(lambda: d.callback(rows))
            else:
                held.append(lambda: real(username, groups).chainDeferred(d))
            return d

        storage.unread_counts = later

        def release():
            storage.unread_counts = real
            while held:
                held.pop(0)()

        return release

    def unread_of(self, line_client):
        return line_client.send("/unread")

    def test_a_read_elsewhere_up_to_an_older_message_leaves_the_newer_ones_unread(self):
        yoda = self.web.core.login("Yoda", "wise@!man", 6001)
        self.hans.send("/msgto Yoda one")
        self.hans.send("/msgto Yoda two")
        self.hans.send("/msgto Yoda three")
        self.tab2.events()
        seqs = [m["message"]["seq"] for m in self.tab1.events() if m["type"] == "message"]
        yoda.output()
        self.assertEqual(yoda.send(f"/read Hans {seqs[0]}"), ["OK"])  # the terminal read the first only
        self.assertEqual(self.unread_of(yoda), ["DATA Hans 2", "OK"])
        for tab in (self.tab1, self.tab2):
            (read,) = [e for e in tab.events() if e["type"] == "read"]
            self.assertEqual((read["conversation"], read.get("unread")), ("user:Hans", 2))
            self.assertEqual(tab.request("state")["unread"], {"user:Hans": 2})
        self.hans.send("/msgto Yoda four")
        self.assertEqual(self.tab1.next("message")["unread"], 3)
        yoda.output()
        self.assertEqual(yoda.send(f"/read Hans {seqs[2]}"), ["OK"])  # up to "three": "four" is left
        self.assertEqual(self.tab1.next("read").get("unread"), 1)
        self.assertEqual(self.unread_of(yoda), ["DATA Hans 1", "OK"])
        self.assertEqual(yoda.send("/read Hans 999999"), ["OK"])  # everything: the count clears
        read = self.tab1.next("read")
        self.assertEqual((read["conversation"], read.get("unread", 0)), ("user:Hans", 0))
        self.assertEqual(self.tab1.request("state")["unread"], {})

    def test_a_message_arriving_while_a_new_tab_is_counted_is_counted_once(self):
        self.hans.send("/msgto Yoda before")
        release = self.hold_unread_counts()
        tab3 = self.web.ws(self.tab1.token)  # admitted; its count asked for, not answered yet
        self.hans.send("/msgto Yoda meanwhile")  # stored, then delivered live to the new tab
        release()  # the count answers: it holds "meanwhile" too
        events = tab3.events()
        self.assertEqual(events[0]["type"], "hello")
        self.assertEqual(events[0]["unread"], {"user:Hans": 2})
        # "meanwhile" follows the hello (the page shows it), its count the hello's, not one more
        self.assertEqual([(e["message"]["text"], e["unread"]) for e in events if e["type"] == "message"],
                         [("meanwhile", 2)])
        self.hans.send("/msgto Yoda after")
        self.assertEqual(tab3.next("message")["unread"], 3)
        self.assertEqual(tab3.request("state")["unread"], {"user:Hans": 3})

    def test_a_message_stored_after_the_count_ran_is_counted_live(self):
        self.hans.send("/msgto Yoda before")
        release = self.hold_unread_counts(run_now=True)
        tab3 = self.web.ws(self.tab1.token)  # counted now; the answer still on its way
        self.hans.send("/msgto Yoda meanwhile")  # not in that count: counted as it arrives
        release()
        events = tab3.events()
        self.assertEqual(events[0]["type"], "hello")
        self.assertEqual(events[0]["unread"], {"user:Hans": 2})
        # "meanwhile" follows the hello (the page shows it), its count the hello's, not one more
        self.assertEqual([(e["message"]["text"], e["unread"]) for e in events if e["type"] == "message"],
                         [("meanwhile", 2)])

    def test_a_read_elsewhere_while_a_new_tab_is_counted_is_applied_to_that_count(self):
        self.hans.send("/msgto Yoda one")
        self.hans.send("/msgto Yoda two")
        first = self.tab1.next("message")["message"]["seq"]
        self.tab2.drop()  # (room for a terminal and a third tab)
        yoda = self.web.core.login("Yoda", "wise@!man", 6001)
        yoda.output()
        release = self.hold_unread_counts(run_now=True)
        tab3 = self.web.ws(self.tab1.token)  # counted: both unread; the answer on its way
        self.assertEqual(yoda.send(f"/read Hans {first}"), ["OK"])  # then "one" is read elsewhere
        release()  # the count does not know whether it came before or after: asked again
        hello = tab3.next("hello")
        self.assertEqual(hello["unread"], {"user:Hans": 1})
        self.assertEqual(yoda.send("/unread"), ["DATA Hans 1", "OK"])

    def test_too_much_arriving_while_a_tab_is_counted_is_counted_again(self):
        self.patch(websession, "MAX_HELD", 3)
        release = self.hold_unread_counts()
        tab3 = self.web.ws(self.tab1.token)
        for i in range(5):  # more than the tab keeps to replay on the count's answer
            self.hans.send(f"/msgto Yoda m{i}")
        release()
        self.assertEqual(tab3.next("hello")["unread"], {"user:Hans": 5})
        self.hans.send("/msgto Yoda one more")
        self.assertEqual(tab3.next("message")["unread"], 6)

    def test_an_unread_group_message_deleted_is_no_longer_counted(self):
        yoda = self.web.core.login("Yoda", "wise@!man", 6001)
        self.hans.send("/creategroup Jedi Yoda")
        yoda.send("/joingroup Jedi")
        self.hans.send("/groupmsg Jedi oops")
        self.hans.send("/groupmsg Jedi hello")
        self.assertEqual(self.tab1.request("state")["unread"], {"group:jedi": 2})
        self.tab1.events()
        self.assertEqual(self.hans.send("/deletegroupmsg Jedi 1")[-1][:3], "OK ")
        read = self.tab1.next("read")
        self.assertEqual((read["conversation"], read["unread"]), ("group:jedi", 1))
        self.assertEqual(self.tab1.request("state")["unread"], {"group:jedi": 1})
        yoda.output()
        self.assertEqual(yoda.send("/unread"), ["DATA #Jedi 1", "OK"])

    def test_an_unread_private_message_deleted_is_no_longer_counted_and_shows_deleted(self):
        yoda = self.web.core.login("Yoda", "wise@!man", 6001)
        self.hans.send("/msgto Yoda oops")
        self.hans.send("/msgto Yoda hello")
        first = self.tab1.next("message")["message"]["seq"]
        self.assertEqual(self.tab1.request("state")["unread"], {"user:Hans": 2})
        self.tab1.events()
        yoda.output()
        self.assertEqual(self.hans.send(f"/deletemsg {first}")[-1], f"OK Message {first} deleted.")
        events = self.tab1.events()
        (deleted,) = [e for e in events if e["type"] == "message_deleted"]
        self.assertEqual((deleted["seq"], deleted["by"]), (first, "Hans"))
        self.assertEqual((deleted["message"]["seq"], deleted["message"]["sender"], deleted["message"]["text"]),
                         (first, "Hans", "[deleted]"))
        (read,) = [e for e in events if e["type"] == "read"]
        self.assertEqual((read["conversation"], read["unread"]), ("user:Hans", 1))
        self.assertEqual(self.tab1.request("state")["unread"], {"user:Hans": 1})
        self.assertEqual(yoda.output(), [])  # the line protocol tells nobody of a private deletion
        self.assertEqual(yoda.send("/unread"), ["DATA Hans 1", "OK"])

    def test_the_session_limit_refuses_one_tab_too_many(self):
        third = self.web.ws(self.tab1.token)
        third.next("hello")
        fourth = self.web.ws(self.tab1.token)
        refused = fourth.next("refused")
        self.assertEqual((refused["code"], refused["text"]),
                         ("already-logged-in", "This account is already logged in"))
        self.assertTrue(fourth.transport.disconnecting)
        fourth.drop()
        self.assertTrue(self.tab1.request("ping")["ok"])  # the login and its other tabs stay
        third.drop()  # a tab closed while others are open: its session ends at once
        self.assertTrue(self.web.ws(self.tab1.token).next("hello"))

    def test_a_tab_closes_at_once_the_last_one_after_the_grace(self):
        yoda = self.web.core.login("Yoda", "wise@!man", 6001)
        self.tab2.drop()
        self.assertEqual(len(self.sessions(yoda)), 3)  # tab 1, the terminal, OK
        yoda.send("/logout")
        self.hans.output()
        self.tab1.drop()  # the last tab: kept for a reload, nobody told of a logout
        self.web.advance(60)
        self.assertEqual(self.hans.output(), [])
        back = self.web.ws(self.tab1.token)
        self.assertEqual(back.next("hello")["username"], "Yoda")
        back.drop()
        self.web.advance(121)
        self.assertNotIn("Yoda", [u.name for u in self.web.chat.active_users()])
        self.assertEqual(self.web.ws(self.tab1.token).status, 401)

    def test_logout_all_from_another_device_ends_the_browser_login(self):
        yoda = self.web.core.login("Yoda", "wise@!man", 6001)
        self.assertEqual(yoda.send("/logout all"), ["OK Bye, Yoda!"])
        for tab in (self.tab1, self.tab2):
            self.assertEqual(tab.next("ended")["text"], "You have been logged out from another session")
        self.assertEqual(self.web.ws(self.tab1.token).status, 401)
        self.assertNotIn("Yoda", [u.name for u in self.web.chat.active_users()])


class LimitTests(SynchronousTestCase):
    def test_slow_reader_is_dropped(self):
        web = WebFixture(self, max_output=64 * 1024)
        yoda = web.browser("Yoda", "wise@!man")
        hans = web.browser("Hans", "falcon*solo")
        hans.transport.producer.pauseProducing()  # its socket buffer is full: it does not read
        text = "x" * 1000
        for _ in range(100):
            if hans.transport.disconnecting:
                break
            reply = yoda.request("send", to="Hans", text=text)
        self.assertTrue(hans.transport.disconnecting)
        self.assertTrue(hans.transport.disconnected)  # aborted, not closed politely
        hans.drop()
        self.assertTrue(reply["ok"])  # nobody else is slowed down
        self.assertTrue(yoda.request("ping")["ok"])

    def test_a_peer_that_does_not_answer_pings_is_dropped(self):
        web = WebFixture(self)
        yoda = web.browser("Yoda", "wise@!man")
        hans = web.browser("Hans", "falcon*solo")
        web.clock.advance(websocket.PING_INTERVAL)
        yoda.pump()  # wsproto answers the ping; hans's client never reads it
        web.clock.advance(websocket.PING_INTERVAL)
        self.assertTrue(hans.transport.disconnected)
        self.assertFalse(yoda.transport.disconnecting)
        hans.drop()
        yoda.drop()
        self.assertIsNone(web.frontend.sockets._pinger)  # no timer left once nobody is connected

    def test_an_idle_page_that_answers_pings_stays_connected(self):
        # Each pong (6 bytes from a browser) counted towards the next request, which never came:
        # at the real bound (about 200 KB) a page left open for some twelve days was cut off.
        # A smaller bound shows it in simulated hours.
        self.patch(websocket, "MAX_BUFFERED", 1000)
        web = WebFixture(self)
        yoda = web.browser("Yoda", "wise@!man")
        web.advance(6 * 3600, yoda)  # 720 pings answered, about 4 KB of pongs
        self.assertFalse(yoda.transport.disconnecting)
        self.assertTrue(yoda.request("ping")["ok"])

    def test_connection_caps(self):
        web = WebFixture(self, max_connections_per_ip=2)
        token = web.token("Yoda", "wise@!man")
        first, second = web.ws(token), web.ws(token)
        self.assertTrue(first.accepted and second.accepted)
        third = web.ws(token)
        self.assertEqual(third.status, 503)
        self.assertIn(b"Too many connections from 127.0.0.1", third.reject_body)
        first.drop()
        self.assertTrue(web.ws(token).accepted)

    def test_rate_limit(self):
        web = WebFixture(self, rate_limit=1.0, rate_burst=3)
        yoda = web.browser("Yoda", "wise@!man")
        replies = [yoda.request("ping") for _ in range(4)]
        self.assertEqual([r["ok"] for r in replies], [True, True, True, False])
        self.assertEqual(replies[-1]["error"], "Too many commands; slow down")
        web.clock.advance(1)
        self.assertTrue(yoda.request("ping")["ok"])


class WrittenJSONTests(SynchronousTestCase):
    """
    The hot path writes a message's reply and event without json's general
    encoder, and reads a request with json's scanner alone: the page gets the
    very bytes json would write, and every request reads as json.loads reads it.
    """

    def messages(self):
        from chatproto.core.events import Message

        yield Message("private", 7, "2026-12-07 20:00:00", 1765137600.25, "Yoda", "Hans", None, "hi")
        yield Message("private", 8, "2026-12-07 20:00:00", 1765137600.0, "Yoda", "Hans", None,
                      'quote " backslash \\ tab\t nul\x00 é 日本 🙂 \u2028 lone \ud800 </script>')
        yield Message("group", 9, "2026-12-07 20:00:01", 1e-7, "Yoda", None, "Jedi", "to the group")
        yield Message("private", 10, "2026-12-07 20:00:02", 5, "Yoda", "Hans", None, "an int time")
        yield Message("private", 11, "2026-12-07 20:00:03", float("inf"), "Yoda", "Hans", None, "inf")

    def test_messages_events_and_replies_are_json_s_bytes(self):
        from chatproto.core.events import Sent, UserOnline

        dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
        for message in self.messages():
            self.assertEqual(websocket.message_text(message), dumps(websocket.message_json(message)))
            for unread in (None, 0, 3):
                self.assertEqual(websocket.event_text(message, unread),
                                 dumps(websocket.event_json(message, unread)))
            self.assertEqual(websocket.event_text(Sent(message)), dumps(websocket.event_json(Sent(message))))
        online = UserOnline("Hans", "2026-12-07 20:00:00", 1765137600.0)
        self.assertEqual(websocket.event_text(online), dumps(websocket.event_json(online)))

    def test_message_bytes_are_json_s_bytes_whatever_the_message_before(self):
        """A message's JSON as a frame carries it: json's, encoded as UTF-8 (a lone surrogate
        replaced), whether it shares the fields around its SEQ with the message before or not."""
        from chatproto.core.events import Message

        dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
        base = ("private", 7, "2026-12-07 20:00:00", 1765137600.25, "Yoda", "Hans", None, "hi")
        variants = [base, base[:1] + (8,) + base[2:], base[:2] + ("2026-12-07 20:00:01",) + base[3:],
                    base[:3] + (1765137600.5,) + base[4:], base[:4] + ("leia",) + base[5:],
                    base[:5] + ("leia",) + base[6:], base[:5] + ("Hans é",) + base[6:],
                    ("group", 9) + base[2:5] + (None, "Jedi", "to the group"),
                    ("group", 10) + base[2:5] + (None, "Sith", "to the group"), base[:7] + ("é 🙂 \ud800 \"",),
                    base[:3] + (float("nan"),) + base[4:], base[:3] + (5,) + base[4:], base]
        for fields in variants + variants[::-1]:
            for message in (Message(*fields), Message(*fields)):
                self.assertEqual(websocket.message_bytes(message),
                                 dumps(websocket.message_json(message)).encode("utf-8", "replace"), fields)

    def test_a_message_deleted_since_it_was_written_is_written_again(self):
        message = next(self.messages())
        self.assertIn('"text":"hi"', websocket.message_text(message))
        message.text = "[deleted]"
        self.assertIn('"text":"[deleted]"', websocket.message_text(message))

    def test_send_replies_and_events_are_json_s_bytes(self):
        """What a page is told of its sends, and what their recipients are told, on the wire:
        json's bytes for what it says, whatever the request's id, the recipient, the text."""
        dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
        web = WebFixture(self)
        yoda = web.browser("Yoda", "wise@!man")
        hans = web.browser("Hans", "falcon*solo")
        leia = web.browser("leia", "alderaan")
        sends = [(7, "Hans", "hi"), ("an id é", "leia", "é 🙂"), (None, "Hans", 'a "quote"'),
                 (True, "leia", "a\ud800b"), (2 ** 70, "Hans", "big id"), (-3, "Hans", "x" * 300)]
        requests = []
        for rid, to, text in sends:
            request = {"to": to, "text": text, "type": "send"}
            if rid is not None:
                request["id"] = rid
            requests.append(json.dumps(request).replace("\\\\ud800", "\\ud800"))

        def texts(client):
            client.ws.receive_data(client.transport.value())
            client.transport.clear()
            return [event.data for event in client.ws.events() if isinstance(event, TextMessage)]

        yoda.transport.protocol.dataReceived(b"".join(yoda.ws.send(TextMessage(r)) for r in requests))
        web.clock.advance(0)
        replies, to_hans, to_leia = texts(yoda), texts(hans), texts(leia)
        for text in replies + to_hans + to_leia:
            self.assertEqual(text, dumps(json.loads(text)))  # json's own bytes, in its order
        replies = [r for r in map(json.loads, replies) if r["type"] == "reply"]
        to_hans = [e for e in map(json.loads, to_hans) if e["type"] == "message"]
        to_leia = [e for e in map(json.loads, to_leia) if e["type"] == "message"]
        self.assertEqual([(r["type"], r["id"], r["ok"], r["message"]["text"]) for r in replies],
                         [("reply", 7, True, "hi"), ("reply", "an id é", True, "é 🙂"),
                          ("reply", None, True, 'a "quote"'), ("reply", None, True, "a?b"),
                          ("reply", 2 ** 70, True, "big id"), ("reply", -3, True, "x" * 300)])
        self.assertEqual([(e["type"], e["message"]["text"], e["unread"]) for e in to_hans],
                         [("message", "hi", 1), ("message", 'a "quote"', 2), ("message", "big id", 3),
                          ("message", "x" * 300, 4)])
        self.assertEqual([(e["message"]["recipient"], e["message"]["text"]) for e in to_leia],
                         [("leia", "é 🙂"), ("leia", "a?b")])

    def test_requests_read_as_json_loads_reads_them(self):
        for text in ['{"text":"hi","to":"Hans","id":5,"type":"send"}', ' {"id": 1} ', '{"id":1}\n',
                     "[1, 2]", "NaN", '"a\\ud800b"', "5"]:
            self.assertEqual(repr(websocket.loads(text)), repr(json.loads(text)), text)
        for text in ['{"id":1} x', '{"id":1}{"id":2}', "\ufeff{}", "", "{", '{"a":"\x01"}', "nope"]:
            with self.assertRaises(ValueError) as ours:
                websocket.loads(text)
            with self.assertRaises(ValueError) as theirs:
                json.loads(text)
            self.assertEqual(str(ours.exception), str(theirs.exception), text)


class OptionTests(SynchronousTestCase):
    def test_listen_descriptions(self):
        from twisted.python import usage

        from chatproto.frontends.web.options import web_frontend, web_listen_description

        self.assertIsNone(web_listen_description({}))
        self.assertEqual(web_listen_description({"web-port": "8080"}), "tcp:8080")
        self.assertEqual(web_listen_description({"web-port": "0"}, "127.0.0.1"), "tcp:0:interface=127.0.0.1")
        self.assertEqual(web_listen_description({"web-listen": "ssl:8443:privateKey=k.pem"}),
                         "ssl:8443:privateKey=k.pem")
        for bad in ({"web-port": "x"}, {"web-port": "70000"}, {"web-port": "1", "web-listen": "tcp:2"}):
            self.assertRaises(usage.UsageError, web_listen_description, bad)
        frontend = web_frontend("tcp:0", 4096, {"rate_limit": 2.0, "rate_burst": 5})
        self.assertEqual((frontend.listen, frontend.max_output, frontend.rate_limit, frontend.rate_burst),
                         ("tcp:0", 4096, 2.0, 5))
        self.assertIsNone(web_frontend(None, 4096))
