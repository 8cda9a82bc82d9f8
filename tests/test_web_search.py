"""The WebSocket's search request, without a browser (the page itself: tests/test_e2e_web_search.py)."""

from twisted.trial.unittest import SynchronousTestCase

from tests.web_support import WebFixture


class WebSearchTests(SynchronousTestCase):
    def setUp(self):
        self.web = WebFixture(self)
        self.yoda = self.web.browser("Yoda", "wise@!man")
        self.hans = self.web.browser("Hans", "falcon*solo")
        self.yoda.request("send", to="Hans", text="Into hyperspace")
        self.hans.request("send", to="Yoda", text="the Café is closed")

    def test_results_newest_first_with_the_words_searched(self):
        reply = self.yoda.request("search", text="café HYPER")
        self.assertEqual(reply["messages"], [])
        reply = self.yoda.request("search", text="  hyp*  ")
        self.assertEqual([(m["seq"], m["sender"], m["recipient"], m["text"]) for m in reply["messages"]],
                         [(1, "Yoda", "Hans", "Into hyperspace")])
        self.assertEqual(reply["words"], ["hyp"])
        reply = self.hans.request("search", text="e", **{"in": "Yoda"})
        self.assertEqual([m["text"] for m in reply["messages"]], [])
        reply = self.hans.request("search", text="cafe i", **{"in": "Yoda"})
        self.assertEqual([m["text"] for m in reply["messages"]], ["the Café is closed"])

    def test_others_find_nothing_and_bad_requests(self):
        leia = self.web.browser("leia", "alderaan")
        self.assertEqual(leia.request("search", text="hyperspace")["messages"], [])
        self.assertEqual(leia.request("search", text="x", **{"in": "nobody"})["error"], "No such user: nobody")
        self.assertEqual(leia.request("search", text="x", **{"in": "#Jedi"})["error"],
                         "The group chat does not exist.")
        for fields in ({}, {"text": ""}, {"text": "   "}, {"text": 5}, {"text": "x" * 1025},
                       {"text": "x", "limit": 0}, {"text": "x", "limit": 51}, {"text": "x", "in": ""}):
            reply = leia.request("search", **fields)
            self.assertEqual(reply["code"], "bad-request", fields)

    def test_a_third_search_before_the_first_two_are_answered_is_refused(self):
        import json

        from twisted.internet import defer

        held = []
        self.web.core.storage.search = lambda query: held.append(defer.Deferred()) or held[-1]
        for rid in (1, 2, 3):
            self.yoda.send_raw(json.dumps({"id": f"s{rid}", "type": "search", "text": "x"}))
        self.assertEqual(len(held), 2)
        for d in held:
            d.callback([])
        replies = {m["id"]: m for m in self.yoda.events() if m.get("type") == "reply"}
        self.assertEqual((replies["s1"]["ok"], replies["s2"]["ok"]), (True, True))
        self.assertEqual((replies["s3"]["code"], replies["s3"]["error"]),
                         ("searches-waiting", "Too many searches at once (at most 2). Please wait for the results."))
