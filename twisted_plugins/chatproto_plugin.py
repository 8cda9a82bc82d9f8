from twisted.application.service import ServiceMaker

chat = ServiceMaker(
    "chatproto", "chatproto.app", "chatproto: multi-user messaging service", "chat"
)
