/// Every layer-2 message type.
///
/// 1–20 keep seed 000's numbers and meanings (8, left blank there, is the server's receipt
/// for an accepted chat message); 21–44 are seed 004's commands; 45–47 complete the group
/// life cycle (leave, remove, notices); 48 tells a client its endpoint is going away;
/// 1001–1006 are the handshake, which runs before the channel is encrypted.
public enum MessageType: UInt32, CaseIterable, Sendable {
    case login = 1
    case register = 2
    case addFriend = 3
    case createGroup = 4
    case inviteToGroup = 5
    case chat = 6
    case groupMembersQuery = 7
    case chatAccepted = 8
    case loginOK = 9
    case initialState = 10
    case loginFailed = 11
    case registerOK = 12
    case registerFailed = 13
    case addFriendResult = 14
    case groupCreated = 15
    case addedToGroup = 16
    case groupMembers = 17
    case chatDelivery = 18
    case kicked = 19
    case error = 20

    case ping = 21
    case pong = 22
    case deliveryAck = 23
    case presenceSet = 24
    case fetchOffline = 25
    case offlineDone = 26
    case profileQuery = 27
    case profile = 28
    case profileSet = 29
    case friendListQuery = 30
    case friendList = 31
    case friendPresenceQuery = 32
    case friendPresenceList = 33
    case friendPresenceNotice = 34
    case fileOffer = 35
    case fileChunk = 36
    case fileDone = 37
    case securityAlert = 38
    case serverListQuery = 39
    case serverList = 40
    case tokenAuth = 41
    case authOK = 42
    case quit = 43
    case quitAck = 44
    case leaveGroup = 45
    case removeFromGroup = 46
    case groupNotice = 47
    case reconnect = 48

    case clientHello = 1001
    case serverHello = 1002
    case serverVerify = 1003
    case clientFinished = 1004
    case helloDone = 1005
    case helloError = 1006
}
