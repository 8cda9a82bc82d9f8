from twisted.application.service import ServiceMaker

chat = ServiceMaker(
    "chatproto", "chatproto.server.app", "chatproto: multi-user messaging service", "chat"
)
