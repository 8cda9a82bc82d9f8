"""The terminal client's /search: results in a window of their own, /chat NAME from there."""

from .test_client_terminal import TerminalClientTestCase


class ClientSearchTests(TerminalClientTestCase):
    def test_results_in_their_own_window_then_chat_opens_the_conversation(self):
        self.login()
        self.look()
        self.type(b"/search hyper\r")
        self.assertEqual(self.sent(), ["/search hyper"])
        self.answer("DATA #Jedi #7 02 Jun 2022 09:15:00, luke: Cafe HYPERDRIVE",
                    "DATA Hans #41 01 Jun 2022 21:31:10, Yoda: Into hyperspace", "OK")
        rows = self.look()
        self.assertEqual(rows[:4], [
            "Search hyper: 2 messages, newest first",
            "#7 02 Jun 2022 09:15 [#Jedi] <luke> Cafe HYPERDRIVE",
            "#41 01 Jun 2022 21:31 [Hans] <Yoda> Into hyperspace",
            "/chat NAME opens a conversation (NAME as in [NAME] above); /win 1 goes back."])
        self.assertEqual(rows[-2:], [" Yoda | 2:search | windows: 2:search", "[search]"])
        # Plain text here goes nowhere; /history needs a name.
        self.type(b"hello\r")
        self.assertEqual(self.sent(), [])
        self.assertIn("Plain text goes to a conversation: /chat NAME opens one.", self.look())
        self.type(b"/chat #Jedi\r")
        self.assertEqual(self.sent(), ["/grouphistory Jedi 20"])
        self.answer("DATA #7 02 Jun 2022 09:15:00, Jedi, luke: Cafe HYPERDRIVE", "OK")
        self.assertEqual(self.sent(), ["/members Jedi"])
        self.answer("DATA Yoda owner active", "DATA luke joined active", "OK")
        self.assertEqual(self.look()[-2:], [" Yoda | 3:Jedi | windows: 2:search 3:Jedi", "[Jedi]"])

    def test_a_new_search_reuses_the_window_and_errors_stay_where_typed(self):
        self.login()
        self.type(b"/search hyper\r")
        self.answer("DATA Hans #41 01 Jun 2022 21:31:10, Yoda: Into hyperspace", "OK")
        self.type(b"/search zzz\r")
        self.assertEqual(self.sent(), ["/search hyper", "/search zzz"])
        self.answer("OK No messages found.")
        rows = self.look()
        self.assertIn("Search zzz: No messages found.", rows)
        self.assertNotIn("#41 01 Jun 2022 21:31 [Hans] <Yoda> Into hyperspace", rows)
        self.assertEqual(rows[-2], " Yoda | 2:search | windows: 2:search")
        self.type(b"/win 1\r")
        self.type(b"/search in nobody x\r")
        self.sent()
        self.answer("ERR No such user: nobody")
        rows = self.look()
        self.assertIn("No such user: nobody", rows)
        self.assertEqual(rows[-2], " Yoda | 1:all | windows: 2:search")
