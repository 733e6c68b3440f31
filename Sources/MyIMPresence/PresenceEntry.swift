/// One user's presence: which endpoint holds the session, and since when.
public struct PresenceEntry: Sendable, Hashable {
    /// The user's address, `name@domain`.
    public var user: String
    /// The endpoint (node name from the topology) holding the user's connection.
    public var endpoint: String
    /// The session id; a later login has another, and wins.
    public var session: String
    /// The client's device description.
    public var device: String
    /// When the session went online, in milliseconds since 1970.
    public var since: Int64

    public init(user: String, endpoint: String, session: String, device: String, since: Int64) {
        self.user = user
        self.endpoint = endpoint
        self.session = session
        self.device = device
        self.since = since
    }
}
