"""
/search in a cluster end to end: two real nodes on the run's PostgreSQL and
redis-server; what is written through one node is found through the other,
with the same permissions as on one server.
"""

import re

from .test_e2e_cluster import TS, ClusterCase


class ClusterSearchTests(ClusterCase):
    def setUp(self):
        super().setUp()
        self.a, self.b = self.node(), self.node()

    def test_written_on_one_node_found_on_the_other_with_the_same_permissions(self):
        yoda = self.login(self.a, "Yoda", "wise@!man")
        hans = self.login(self.b, "Hans", "falcon*solo")
        leia = self.login(self.b, "leia", "alderaan")
        luke = self.login(self.a, "luke", "jedi*knight")
        yoda.command("/activeuser", re.compile(r"^Hans, "), re.compile(r"^leia, "))
        # A private message through node A, found at once through node B (accents and case folded).
        yoda.command("/msgto Hans The HYPERDRIVE is fixed at the Café", re.compile("^message sent at"))
        hans.expect(re.compile(rf"^{TS}, Yoda: The HYPERDRIVE is fixed at the Café$"))
        hans.command("/search hyper cafe", re.compile(rf"^Yoda #1 {TS}, Yoda: The HYPERDRIVE is fixed at the Café$"))
        # A group created on A, joined by Hans on B; leia (B) is only invited; luke (A) is not.
        yoda.command("/creategroup Jedi Hans leia", re.compile("^Group chat room has been created"))
        hans.expect(re.compile("invited to the group chat Jedi"))
        hans.command("/joingroup Jedi", "Joined the group chat: Jedi successfully.")
        yoda.expect("Hans has joined the group chat Jedi.")
        yoda.command("/groupmsg Jedi hyperspace jump in ten", "Group chat message sent.")
        hans.expect(re.compile(rf"^{TS}, Jedi, Yoda: hyperspace jump in ten$"))
        hans.command("/search hyper", re.compile(rf"^#Jedi #1 {TS}, Yoda: hyperspace jump in ten$"),
                     re.compile(rf"^Yoda #1 {TS}, Yoda: The HYPERDRIVE is fixed at the Café$"))
        leia.command("/search hyper", "No messages found.")  # invited, never joined
        luke.command("/search hyper", "No messages found.")  # another user's conversation, a group not his
        hans.command("/search in #Jedi hyper", re.compile(rf"^#Jedi #1 {TS}, Yoda: hyperspace jump in ten$"))
        # Deleted through node A: never found through node B.
        yoda.command("/deletemsg 1", "Message 1 deleted.")
        hans.command("/search hyper", re.compile(rf"^#Jedi #1 {TS}, Yoda: hyperspace jump in ten$"))
        hans.command("/search cafe", "No messages found.")
        # Hans leaves the group on node B: its messages are no longer his to find, on either node.
        hans.command("/leavegroup Jedi", "You have left the group chat Jedi.")
        yoda.expect("Hans has left the group chat Jedi.")
        hans.command("/search hyper", "No messages found.")
        # leia moves to node A and joins there: the group's messages are hers to find, on A.
        leia.send("/logout")
        leia.expect("Bye, leia!")
        leia = self.login(self.a, "leia", "alderaan")
        leia.command("/joingroup Jedi", "Joined the group chat: Jedi successfully.")
        leia.command("/search jump", re.compile(rf"^#Jedi #1 {TS}, Yoda: hyperspace jump in ten$"))
