"""
The chat core: accounts logging in, users, groups, the lockout and history.

It knows no socket, no wire format and no file. Front ends call the realm
(L{chatproto.core.realm.ChatRealm}) and render the events and typed errors it
gives back; storage sits behind L{chatproto.core.interfaces.IChatStorage}.
"""
