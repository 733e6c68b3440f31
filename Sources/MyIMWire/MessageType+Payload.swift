extension MessageType {
    /// The typed message carried by packets of this type; ``Packet/message()`` decodes with it.
    public var payloadType: any WireMessage.Type {
        switch self {
        case .login: Login.self
        case .register: Register.self
        case .addFriend: AddFriend.self
        case .createGroup: CreateGroup.self
        case .inviteToGroup: InviteToGroup.self
        case .chat: Chat.self
        case .groupMembersQuery: GroupMembersQuery.self
        case .chatAccepted: ChatAccepted.self
        case .loginOK: LoginOK.self
        case .initialState: InitialState.self
        case .loginFailed: LoginFailed.self
        case .registerOK: RegisterOK.self
        case .registerFailed: RegisterFailed.self
        case .addFriendResult: AddFriendResult.self
        case .groupCreated: GroupCreated.self
        case .addedToGroup: AddedToGroup.self
        case .groupMembers: GroupMembers.self
        case .chatDelivery: ChatDelivery.self
        case .kicked: Kicked.self
        case .error: ErrorMessage.self

        case .ping: Ping.self
        case .pong: Pong.self
        case .deliveryAck: DeliveryAck.self
        case .presenceSet: PresenceSet.self
        case .fetchOffline: FetchOffline.self
        case .offlineDone: OfflineDone.self
        case .profileQuery: ProfileQuery.self
        case .profile: Profile.self
        case .profileSet: ProfileSet.self
        case .friendListQuery: FriendListQuery.self
        case .friendList: FriendList.self
        case .friendPresenceQuery: FriendPresenceQuery.self
        case .friendPresenceList: FriendPresenceList.self
        case .friendPresenceNotice: FriendPresenceNotice.self
        case .fileOffer: FileOffer.self
        case .fileChunk: FileChunk.self
        case .fileDone: FileDone.self
        case .securityAlert: SecurityAlert.self
        case .serverListQuery: ServerListQuery.self
        case .serverList: ServerList.self
        case .tokenAuth: TokenAuth.self
        case .authOK: AuthOK.self
        case .quit: Quit.self
        case .quitAck: QuitAck.self
        case .leaveGroup: LeaveGroup.self
        case .removeFromGroup: RemoveFromGroup.self
        case .groupNotice: GroupNotice.self
        case .reconnect: Reconnect.self

        case .clientHello: ClientHello.self
        case .serverHello: ServerHello.self
        case .serverVerify: ServerVerify.self
        case .clientFinished: ClientFinished.self
        case .helloDone: HelloDone.self
        case .helloError: HelloError.self
        }
    }
}
