"""
The client's side of authenticated p2p file transfers (docs/TRANSFER.md).

L{FileTransfers} reads the server lines that set a transfer up (C{PEER} with
a transfer id and secret, for the presenter; C{OFFER}, for the receiver),
applies the C{--accept-files} policy, answers C{/accept} and C{/reject}, and
is the transfer endpoint's listener (it passes progress, received files and
failures on to the chat client, which shows them).

It knows the chat client only through three things: a way to show a line,
a way to get the transfer endpoint (or L{None}), and the listener to pass
the endpoint's calls on to.
"""

from __future__ import annotations

import os

from ..transfer.names import final_name, printable, size_text

POLICIES = ("all", "ask", "none")
DEFAULT_POLICY = "all"
COMMANDS = ("/accept", "/reject")
OPTION = "--accept-files"
OPTION_HELP = (
    "  --accept-files all|ask|none: files other users send you (/p2pvideo): take them all\n"
    "      (default), ask each time (answer /accept N or /reject N), or refuse them all"
)
_DECISIONS = {"all": "accept", "ask": "ask", "none": "refuse"}

OLD_SERVER = (
    "Cannot send the file: the server gave no transfer key (it is older than this client),"
    " and receivers only accept transfers the server announced."
)


def take_option(argv: list[str]) -> tuple[list[str], str]:
    """
    Remove C{--accept-files all|ask|none} (or C{--accept-files=...}) from
    C{argv}; return the other arguments and the policy (C{ValueError} if bad).
    """
    rest, policy, i = [], DEFAULT_POLICY, 0
    while i < len(argv):
        arg = argv[i]
        if arg == OPTION or arg.startswith(OPTION + "="):
            if "=" in arg:
                value = arg.partition("=")[2]
            elif i + 1 < len(argv):
                i += 1
                value = argv[i]
            else:
                value = ""
            if value not in POLICIES:
                raise ValueError(f"invalid {OPTION}: {value!r} (all, ask or none)")
            policy = value
        else:
            rest.append(arg)
        i += 1
    return rest, policy


def parse_peer(text: str):
    """
    C{USERNAME IP UDP_PORT TRANSFER_ID SECRET} (a C{PEER} line's text):
    C{(username, ip, port, transfer_id, secret)}, or L{None} if it is not
    that (an older server sends no id and secret).
    """
    fields = text.split()
    if len(fields) != 5:
        return None
    name, ip, port, transfer_id, secret = fields
    if not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        return None
    return name, ip, int(port), transfer_id, secret


class FileTransfers:
    """
    @param show: shows one line to the user.
    @param endpoint: returns the L{TransferEndpoint} (or L{None}: no transfers).
    @param listener: the chat client: told of progress, received files and
        failures (C{transfer_progress}, C{transfer_received},
        C{transfer_failed}), as the endpoint would tell it.
    @param policy: C{all}, C{ask} or C{none} (C{--accept-files}).
    """

    def __init__(self, show, endpoint, listener=None, policy: str = DEFAULT_POLICY):
        if policy not in POLICIES:
            raise ValueError(f"invalid {OPTION}: {policy!r}")
        self.show = show
        self.endpoint = endpoint
        self.listener = listener
        self.policy = policy
        self._asked: dict[int, tuple[int, str, str]] = {}  # number -> (transfer id, presenter, name)
        self._next_number = 1

    # -- server lines ---------------------------------------------------------

    def peer_line(self, text: str):
        """The presenter's C{PEER} line: the peer to send to (see L{parse_peer}), or L{None}."""
        peer = parse_peer(text)
        if peer is None:
            self.show(OLD_SERVER)
        return peer

    def offer_line(self, text: str) -> None:
        """C{OFFER TRANSFER_ID SECRET PRESENTER PRESENTER_IP FILENAME}: a file is coming to us."""
        fields = text.split(None, 4)
        if len(fields) != 5:
            self.show(f"Ignored a malformed file offer from the server: {printable(text, 200)}")
            return
        transfer_id, secret, presenter, presenter_ip, filename = fields
        who, name = printable(presenter, 64), printable(os.path.basename(filename))
        endpoint = self.endpoint()
        if endpoint is None:
            return  # no UDP endpoint in this client: the presenter's transfer times out
        try:
            endpoint.expect(transfer_id, secret, presenter, presenter_ip, filename,
                            decision=_DECISIONS[self.policy])
        except ValueError as e:
            self.show(f"Refused {name} from {who}: {e}")
            return
        if self.policy == "none":
            self.show(f"Refused {name} from {who} (this client accepts no files: --accept-files none).")

    # -- /accept and /reject ----------------------------------------------------

    def command(self, words: list[str]) -> None:
        """C{/accept [N]} or C{/reject [N]}: answer an offer (the only one waiting, if no N)."""
        verb = words[0]
        endpoint = self.endpoint()
        self._forget_settled(endpoint)
        if len(words) > 2:
            self.show(f"Usage: {verb} [N]")
            return
        if len(words) == 1:
            if len(self._asked) != 1:
                waiting = ", ".join(str(n) for n in sorted(self._asked))
                self.show(f"Usage: {verb} N (waiting: {waiting})" if waiting else "No file offer is waiting.")
                return
            number = next(iter(self._asked))
        else:
            number = int(words[1]) if words[1].isascii() and words[1].isdigit() else None
        if number not in self._asked:
            self.show(f"No file offer {printable(words[1], 20)} is waiting.")
            return
        transfer_id, presenter, name = self._asked.pop(number)
        if verb == "/accept":
            if endpoint is not None and endpoint.accept_offer(transfer_id):
                self.show(f"Accepted {name} from {presenter}.")
                return
        elif endpoint is not None and endpoint.refuse_offer(transfer_id):
            self.show(f"Rejected {name} from {presenter}.")
            return
        self.show(f"The offer of {name} from {presenter} is no longer waiting.")

    def _forget_settled(self, endpoint) -> None:
        for number, (transfer_id, _presenter, _name) in list(self._asked.items()):
            if endpoint is None or not endpoint.offer_waiting(transfer_id):
                del self._asked[number]

    # -- the endpoint's listener --------------------------------------------------

    def transfer_offered(self, transfer_id, presenter: str, basename: str, size: int) -> None:
        self._forget_settled(self.endpoint())
        number = self._next_number
        self._next_number += 1
        self._asked[number] = (transfer_id, presenter, basename)
        self.show(
            f"{presenter} wants to send you {basename} ({size_text(size)})."
            f" Type /accept {number} or /reject {number}."
        )

    def transfer_held(self, transfer_id, peer_name: str, basename: str) -> None:
        self.show(f"Waiting for {peer_name} to accept {basename}...")

    def transfer_received(self, presenter: str, basename: str, final_path: str) -> None:
        self._pass_on("transfer_received", presenter, basename, final_path)
        stored, wanted = os.path.basename(final_path), final_name(presenter, basename)
        if stored != wanted:
            self.show(f"It was saved as {stored}: {wanted} exists and was not received from {presenter}.")

    def transfer_failed(self, direction, peer_name, basename, reason) -> None:
        self._pass_on("transfer_failed", direction, peer_name, basename, reason)

    def transfer_progress(self, *args) -> None:
        self._pass_on("transfer_progress", *args)

    def _pass_on(self, method: str, *args) -> None:
        callback = getattr(self.listener, method, None)
        if callback is not None:
            callback(*args)
