import MyIMSecureChannel

/// An endpoint the client may connect to, with the key it must present.
public struct EndpointCandidate: Sendable, Equatable, CustomStringConvertible {
    /// The endpoint's name in the signed server list; nil for an address outside the list
    /// that the user pinned by hand.
    public var name: String?
    /// Where to connect.
    public var address: ServerAddress
    /// The identity-key fingerprint the endpoint must present (pinned, section 5.12).
    public var fingerprint: KeyFingerprint
    /// The list's priority (lower first); nil for a hand-pinned address.
    public var priority: Int64?

    public init(name: String?, address: ServerAddress, fingerprint: KeyFingerprint, priority: Int64?) {
        self.name = name
        self.address = address
        self.fingerprint = fingerprint
        self.priority = priority
    }

    /// `name (host:port)`, or just `host:port` for a hand-pinned address.
    public var description: String { name.map { "\($0) (\(address))" } ?? address.description }
}

extension SavedSession {
    /// The endpoints to try, in order, each with the fingerprint to pin.
    ///
    /// - Without `explicit`: every entry of the signed server list with a usable fingerprint,
    ///   lowest priority first (then by name); the caller falls back to the next one when a
    ///   connection fails.
    /// - With `explicit` (`host:port`): that endpoint only. If the signed list has it, its
    ///   fingerprint from the list is pinned (a `pin` that differs from it is refused: 203).
    ///   An address the list does not have is refused (203) unless `pin` gives its key.
    ///
    /// - Throws: ``ClientError``: 118 for an unparsable address, 203 as above, 211 when the
    ///   saved list has no usable endpoint.
    public func endpointCandidates(explicit: String? = nil, pin: KeyFingerprint? = nil) throws(ClientError) -> [EndpointCandidate] {
        let listed = servers
            .sorted { ($0.priority, $0.name) < ($1.priority, $1.name) }
            .compactMap { server -> EndpointCandidate? in
                guard let fingerprint = KeyFingerprint(server.fingerprint), (1...65535).contains(server.port) else { return nil }
                return EndpointCandidate(
                    name: server.name, address: ServerAddress(host: server.host, port: server.port), fingerprint: fingerprint,
                    priority: server.priority)
            }
        guard let explicit else {
            if pin != nil {
                throw ClientError(.invalidField, "a pin only applies to an endpoint given explicitly (--endpoint host:port)")
            }
            guard !listed.isEmpty else {
                throw ClientError(.notEstablished, """
                    the saved server list of \(domain) has no usable endpoint; log in again (myim login \(address) --password-stdin) \
                    to fetch a fresh one, or give one with --endpoint host:port --pin sha256:…
                    """)
            }
            return listed
        }
        let address = try ServerAddress(parsing: explicit)
        if let entry = listed.first(where: { $0.address == address }) {
            if let pin, pin != entry.fingerprint {
                throw ClientError(.serverKeyMismatch, """
                    the pin \(pin) differs from the fingerprint \(entry.fingerprint) that the signed server list of \(domain) \
                    gives for \(entry); refusing to connect (log in again if the list is stale)
                    """)
            }
            return [entry]
        }
        guard let pin else {
            let known = listed.map(\.address.description).joined(separator: ", ")
            throw ClientError(.serverKeyMismatch, """
                \(address) is not in the signed server list of \(domain) (\(known.isEmpty ? "which is empty" : known)), \
                so its key cannot be verified; refusing to connect. Use a listed endpoint, or pass --pin sha256:… with the \
                endpoint's fingerprint from its operator
                """)
        }
        return [EndpointCandidate(name: nil, address: address, fingerprint: pin, priority: nil)]
    }
}
