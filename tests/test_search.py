"""
/search without sockets: the core's permissions (what a user may find) and
the line protocol's lines, over the SQLite index (and the memory scan), on a
task.Clock with StringTransport.
"""

import os

from twisted.trial.unittest import SynchronousTestCase

from chatproto.storage.sqlite import SQLiteDatabase

from .support import ChatFixture

TS = r"01 Jun 2022 \d{2}:\d{2}:\d{2}"


class SearchPermissionTests(SynchronousTestCase):
    """Each way a message can be out of someone's reach, through the core."""

    def database(self, directory):
        return SQLiteDatabase(os.path.join(directory, "chatproto.db")).open()

    def setUp(self):
        probe = ChatFixture(self)
        self.f = ChatFixture(self, database=self.database(probe.dir))
        self.f.chat.passwords.rounds = 4
        self.yoda = self.f.login("Yoda", "wise@!man")
        self.hans = self.f.login("Hans", "falcon*solo")
        self.leia = self.f.login("leia", "alderaan")

    def found(self, connection, text, in_=None):
        d = self.f.chat.search(connection.protocol.user, text, in_)
        self.f.clock.advance(0)
        return [m.text for m in self.successResultOf(d)]

    def test_private_messages_sent_and_received(self):
        self.yoda.send("/msgto Hans hyperdrive fixed")
        self.hans.send("/msgto Yoda hyperdrive thanks")
        self.assertEqual(self.found(self.yoda, "hyper"), ["hyperdrive thanks", "hyperdrive fixed"])
        self.assertEqual(self.found(self.hans, "hyper"), ["hyperdrive thanks", "hyperdrive fixed"])

    def test_another_users_private_conversation_is_never_found(self):
        self.yoda.send("/msgto Hans hyperdrive fixed")
        self.assertEqual(self.found(self.leia, "hyperdrive"), [])
        self.assertEqual(self.found(self.leia, "hyperdrive", "Yoda"), [])
        self.assertEqual(self.found(self.leia, "hyperdrive", "Hans"), [])

    def test_a_group_never_joined_is_never_found(self):
        self.yoda.send("/creategroup Jedi Hans leia")
        self.hans.send("/joingroup Jedi")
        self.yoda.send("/groupmsg Jedi hyperspace jump")
        self.assertEqual(self.found(self.hans, "hyper"), ["hyperspace jump"])
        luke = self.f.login("luke", "jedi*knight")
        self.assertEqual(self.found(luke, "hyper"), [])
        self.assertEqual(self.found(self.leia, "hyper"), [])  # invited, not joined
        self.assertEqual(self.found(self.yoda, "hyper", "#Jedi"), ["hyperspace jump"])

    def test_a_group_left_is_not_searched(self):
        self.yoda.send("/creategroup Jedi Hans")
        self.hans.send("/joingroup Jedi")
        self.yoda.send("/groupmsg Jedi hyperspace jump")
        self.hans.send("/leavegroup Jedi")
        self.assertEqual(self.found(self.hans, "hyper"), [])

    def test_a_deleted_message_is_never_found(self):
        self.yoda.send("/msgto Hans hyperdrive broken")
        self.yoda.send("/creategroup Jedi Hans")
        self.hans.send("/joingroup Jedi")
        self.hans.send("/groupmsg Jedi hyperdrive parts")
        self.yoda.output()
        self.assertEqual(self.yoda.send("/deletemsg 1"), ["OK Message 1 deleted."])
        self.assertEqual(self.hans.send("/deletegroupmsg Jedi 1"), ["OK Message 1 deleted."])
        self.assertEqual(self.found(self.yoda, "hyperdrive"), [])
        self.assertEqual(self.found(self.hans, "hyperdrive"), [])
        self.assertEqual(self.found(self.hans, "deleted"), [])

    def test_a_group_created_again_under_an_old_name_does_not_show_the_old_one(self):
        self.yoda.send("/creategroup Jedi Hans")
        self.hans.send("/joingroup Jedi")
        self.yoda.send("/groupmsg Jedi old secret")
        self.yoda.send("/leavegroup Jedi")
        self.hans.send("/leavegroup Jedi")  # the group is gone, its log stays
        self.f.login("luke", "jedi*knight")
        self.leia.send("/creategroup jedi luke")
        self.leia.send("/groupmsg jedi new secret")
        self.assertEqual(self.found(self.leia, "secret"), ["new secret"])
        self.assertEqual(self.found(self.leia, "secret", "jedi"), ["new secret"])


class MemorySearchPermissionTests(SearchPermissionTests):
    def database(self, directory):
        return None


class LineSearchTests(SynchronousTestCase):
    def setUp(self):
        probe = ChatFixture(self)
        self.f = ChatFixture(self, database=SQLiteDatabase(os.path.join(probe.dir, "chatproto.db")).open())
        self.f.chat.passwords.rounds = 4
        self.yoda = self.f.login("Yoda", "wise@!man")
        self.hans = self.f.login("Hans", "falcon*solo")
        self.yoda.send("/creategroup Jedi Hans")
        self.hans.send("/joingroup Jedi")
        self.yoda.output()

    def test_results_newest_first_with_conversation_seq_time_sender(self):
        self.yoda.send("/msgto Hans Into hyperspace")
        self.hans.send("/groupmsg Jedi Café HYPERDRIVE")
        self.hans.send("/msgto Yoda nothing here")
        self.yoda.output()
        lines = self.yoda.send("/search hyper")
        self.assertEqual(len(lines), 3, lines)
        self.assertRegex(lines[0], rf"^DATA #Jedi #1 {TS}, Hans: Café HYPERDRIVE$")
        self.assertRegex(lines[1], rf"^DATA Hans #1 {TS}, Yoda: Into hyperspace$")
        self.assertEqual(lines[2], "OK")
        # The other side sees the private one under the other user's name.
        self.assertRegex(self.hans.send("/search cafe hyp")[0], rf"^DATA #Jedi #1 {TS}, Hans: Café HYPERDRIVE$")
        self.assertRegex(self.hans.send("/search into")[0], rf"^DATA Yoda #1 {TS}, Yoda: Into hyperspace$")

    def test_in_one_conversation(self):
        self.yoda.send("/msgto Hans hyperspace")
        self.hans.send("/groupmsg Jedi hyperdrive")
        self.yoda.output()
        self.assertEqual([line.split(" #")[0] for line in self.yoda.send("/search in Hans hyper")], ["DATA Hans", "OK"])
        for name in ("#Jedi", "Jedi", "jedi"):
            self.assertEqual([line.split(" #")[0] for line in self.yoda.send(f"/search in {name} hyper")],
                             ["DATA", "OK"], name)

    def test_nothing_found_and_words_only(self):
        self.yoda.send('/msgto Hans say "NEAR" OR not')
        self.assertEqual(self.yoda.send("/search hyper"), ["OK No messages found."])
        self.assertEqual(self.yoda.send('/search *'), ["OK No messages found."])
        self.assertEqual(self.yoda.send('/search NOT hyper'), ["OK No messages found."])
        self.assertEqual(len(self.yoda.send('/search say -NEAR')), 2)  # '-' excludes nothing
        self.assertEqual(len(self.yoda.send('/search "NEAR" OR')), 2)
        self.assertEqual(self.yoda.send("/search in"), ["OK No messages found."])  # "in" is the text

    def test_errors_as_history(self):
        vader = self.f.login("vader", "sithlord**")
        self.f.login("leia", "alderaan").send("/creategroup Sith vader")
        self.assertEqual(self.yoda.send("/search"), ["ERR Usage: /search [in NAME] TEXT"])
        self.assertEqual(self.yoda.send("/search   "), ["ERR Usage: /search [in NAME] TEXT"])
        self.assertEqual(self.yoda.send("/search in nobody hyper"), ["ERR No such user: nobody"])
        self.assertEqual(self.yoda.send("/search in #Nope hyper"), ["ERR The group chat does not exist."])
        self.assertEqual(self.yoda.send("/search in Sith hyper"), ["ERR You are not in this group chat."])
        vader.output()
        self.assertEqual(vader.send("/search in #Sith hyper"),
                         ["ERR Please join the group before reading its history."])

    def test_at_most_50_results(self):
        for i in range(60):
            self.yoda.send(f"/groupmsg Jedi lightsaber {i}")
        self.hans.output()
        lines = self.hans.send("/search light")
        self.assertEqual(len(lines), 51)
        self.assertTrue(lines[0].endswith("Yoda: lightsaber 59"))
        self.assertTrue(lines[49].endswith("Yoda: lightsaber 10"))

    def test_before_login(self):
        self.assertEqual(self.f.connect().send("/search hyper"), ["ERR Please log in first"])



class SearchesWaitingTests(SynchronousTestCase):
    def test_a_client_sending_searches_faster_than_answered_is_told_to_wait(self):
        from twisted.internet import defer

        f = ChatFixture(self)
        f.chat.passwords.rounds = 4
        yoda = f.login("Yoda", "wise@!man")
        hans = f.login("Hans", "falcon*solo")
        held = []
        f.storage.search = lambda query: held.append(defer.Deferred()) or held[-1]
        yoda.protocol.dataReceived(b"/search a\n/search b\n/search c\n")
        f.clock.advance(0)
        self.assertEqual(len(held), 2)
        self.assertEqual(yoda.output(), [])  # replies keep the commands' order: the first two wait
        self.assertEqual(hans.send("/search x"), [])  # another user's are counted apart: it waits too
        self.assertEqual(len(held), 3)
        for d in held:
            d.callback([])
        f.clock.advance(0)
        self.assertEqual(yoda.output(), [
            "OK No messages found.", "OK No messages found.",
            "ERR Too many searches at once (at most 2). Please wait for the results."])
        self.assertEqual(hans.output(), ["OK No messages found."])
        self.assertEqual(yoda.send("/search d"), [])  # free again
        self.assertEqual(len(held), 4)


def test_accents_and_case_are_folded_the_same_the_quick_way_and_the_long_way():
    """fold's quick way (ASCII and the usual accents) gives what dropping every mark gives, in any text."""
    import random
    import unicodedata

    from chatproto.core.search import fold

    def decomposed(text):
        return "".join(c for c in unicodedata.normalize("NFD", text.lower()) if not unicodedata.combining(c))

    assert fold("Café CRÈME Ærø Straße İstanbul ΣΟΦΟΣ") == decomposed("Café CRÈME Ærø Straße İstanbul ΣΟΦΟΣ")
    assert fold("Ça Déçoit Ñandú") == "ca decoit nandu"
    rng = random.Random(26)
    characters = [chr(code) for code in range(0x20, 0x600)]
    for _ in range(5000):
        text = "".join(rng.choice(characters) for _ in range(rng.randint(1, 12)))
        assert fold(text) == decomposed(text), repr(text)
