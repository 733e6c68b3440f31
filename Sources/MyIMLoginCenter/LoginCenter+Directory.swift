import Logging
import MyIMLink
import MyIMWire
import NIOCore

/// Where the login center serves its directory to the domains' centers.
public struct DirectoryListenConfiguration: Sendable {
    public var host: String
    public var port: Int
    public var protection: LinkProtection
    /// Which center may link for which domain: domain → center node name.
    public var centers: [String: String]

    public init(host: String, port: Int, protection: LinkProtection, centers: [String: String]) {
        self.host = host
        self.port = port
        self.protection = protection
        self.centers = centers
    }
}

/// The directory: centers ask which addresses have an account (``DirectoryLookup``) and hear
/// about logins from new devices (``AccountNotice``). A center links for its own domain and
/// can look up that domain's addresses only.
extension LoginCenter {
    /// Binds the directory's link address (port 0 picks one).
    public func bindDirectory() async throws -> NIOAsyncChannel<NIOAsyncChannel<Packet, Packet>, Never> {
        guard let directory = configuration.directory else {
            throw LoginRefusal(.notSupportedHere, "the login center has no directory address configured")
        }
        return try await LinkChannel.bind(host: directory.host, port: directory.port, protection: directory.protection)
    }

    /// Serves every center link the listener accepts until it closes or the task is cancelled.
    public func serveDirectory(_ listener: NIOAsyncChannel<NIOAsyncChannel<Packet, Packet>, Never>) async throws {
        try await withThrowingDiscardingTaskGroup { group in
            try await listener.executeThenClose { inbound in
                for try await link in inbound {
                    group.addTask { await self.handleDirectoryLink(link) }
                }
            }
        }
    }

    /// A directory for a center in this process (the all-in-one mode): the same lookups and
    /// notices as over a link, without one.
    public func localDirectory(domain: String) -> some UserDirectory {
        LocalDirectory(loginCenter: self, domain: domain)
    }

    /// The user ids of those of `users` that have an account in `domain`; addresses of other
    /// domains are never found.
    func lookup(_ users: [String], domain: String) async throws -> [String: Int64] {
        let suffix = "@" + domain
        let names = users.compactMap { user -> String? in
            guard user.hasSuffix(suffix) else { return nil }
            return String(user.dropLast(suffix.count))
        }
        let found = try await store.userIDs(names: names, domain: domain)
        return Dictionary(uniqueKeysWithValues: found.map { ($0.key + suffix, $0.value) })
    }

    private func handleDirectoryLink(_ channel: NIOAsyncChannel<Packet, Packet>) async {
        var subscription: Int?
        var domain = "?"
        do {
            try await channel.executeThenClose { inbound, outbound in
                var packets = inbound.makeAsyncIterator()
                let centers = configuration.directory?.centers ?? [:]
                guard let hello = try await LinkChannel.acceptHello(&packets, outbound: outbound, channel: channel.channel, admit: { hello in
                    centers[hello.domain] == hello.node ? nil : "\(hello.node) is not the center of \(hello.domain) in this topology"
                }) else {
                    logger.warning("directory link refused", metadata: ["peer": "\(channel.channel.remoteAddress?.description ?? "?")"])
                    return
                }
                domain = hello.domain
                // Welcome first, so that a notice can never reach the center before it.
                try await outbound.write(LinkWelcome(node: configuration.name, time: configuration.clock()).packet)
                subscription = subscribe(domain: hello.domain) { notice in
                    try? await outbound.write(notice.packet)
                }
                logger.info("center linked to the directory", metadata: ["center": "\(hello.node)", "domain": "\(hello.domain)"])
                while let packet = try await packets.next() {
                    switch LinkMessageType(rawValue: packet.type) {
                    case .directoryLookup:
                        let request = try DirectoryLookup(packet: packet)
                        let found = try await lookup(request.users, domain: hello.domain)
                        try await outbound.write(DirectoryAnswer(id: request.id, found: found).packet)
                    case .ping:
                        try await outbound.write(LinkPong(time: try LinkPing(packet: packet).time).packet)
                    case .pong:
                        break
                    default:
                        logger.warning("unexpected message on a directory link", metadata: ["center": "\(hello.node)", "type": "\(packet.type)"])
                    }
                }
            }
        } catch {
            logger.notice("directory link ended", metadata: ["domain": "\(domain)", "error": "\(error)"])
        }
        if let subscription { unsubscribe(subscription) }
    }
}

/// The all-in-one mode's directory: the login center in the same process.
struct LocalDirectory: UserDirectory {
    let loginCenter: LoginCenter
    let domain: String

    func lookup(_ users: [String]) async throws(DirectoryError) -> [String: Int64] {
        do {
            return try await loginCenter.lookup(users, domain: domain)
        } catch {
            throw DirectoryError("the account store failed: \(error)")
        }
    }

    func run(notices: @escaping @Sendable (AccountNotice) async -> Void) async {
        let subscription = loginCenter.subscribe(domain: domain, notices)
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(3600))
        }
        loginCenter.unsubscribe(subscription)
    }
}
