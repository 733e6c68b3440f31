import Logging
import Metrics
import MyIMLink
import MyIMTopology
import MyIMWire
import NIOCore

/// A center's link to the login center's directory: ``DirectoryLookup`` → ``DirectoryAnswer``,
/// and ``AccountNotice``s the other way.
///
/// Life of the link: connect (TLS or plain, the login center's certificate checked against
/// the cluster CA and its node name) → `LinkHello(center node, domain)` → `LinkWelcome`
/// (or `LinkRefused`) → lookups, each answered within ``Settings/timeout`` or failed; a
/// `LinkPing` every ``Settings/pingInterval``, the link dropped after three silent intervals,
/// and a reconnect after a capped exponential backoff. While it is down, ``lookup(_:)`` throws
/// at once: the client's request is refused with 334 and can be retried, nothing is queued.
public actor DirectoryLink: UserDirectory {
    public struct Settings: Sendable {
        /// The center's node name and domain, said in `LinkHello`.
        public var node: String
        public var domain: String
        /// The login center's directory address and node name (its certificate's name).
        public var host: String
        public var port: Int
        public var serverName: String
        public var protection: LinkProtection
        /// How long a lookup waits for its answer.
        public var timeout: Duration = .seconds(3)
        public var pingInterval: Duration = .seconds(10)
        public var reconnectFirstDelay: Duration = .milliseconds(100)
        public var reconnectMaximumDelay: Duration = .seconds(5)

        public init(node: String, domain: String, host: String, port: Int, serverName: String, protection: LinkProtection) {
            self.node = node
            self.domain = domain
            self.host = host
            self.port = port
            self.serverName = serverName
            self.protection = protection
        }

        /// The link of center `node` to the login center of `topology`.
        public init(topology: Topology, node: String, keys: ClusterKeys) throws {
            guard let domain = topology.domains.first(where: { $0.center.name == node }) else {
                throw TopologyError(file: topology.file, key: "domains[].center.name", message: "no center is named '\(node)'")
            }
            let login = topology.loginCenter
            self.init(
                node: node, domain: domain.name, host: login.directory.host, port: login.directory.port, serverName: login.name,
                protection: try LinkProtection.client(for: node, keys: keys, links: topology.links))
        }
    }

    public nonisolated let settings: Settings
    private let logger: Logger
    private var writer: NIOAsyncChannelOutboundWriter<Packet>?
    private var pending: [Int64: CheckedContinuation<Result<[String: Int64], DirectoryError>, Never>] = [:]
    private var nextID: Int64 = 0
    /// Incremented by each welcome.
    private var generation = 0
    private var lastHeard = ContinuousClock.now
    private var outageLogged = false

    public init(settings: Settings, logger: Logger = Logger(label: "myim.center.directory")) {
        self.settings = settings
        self.logger = logger
    }

    /// Whether the login center has welcomed the current link.
    public var isConnected: Bool { writer != nil }

    public func lookup(_ users: [String]) async throws(DirectoryError) -> [String: Int64] {
        var found: [String: Int64] = [:]
        let unique = Array(Set(users))
        for start in stride(from: 0, to: unique.count, by: DirectoryLookup.maximumUsers) {
            let chunk = Array(unique[start..<min(start + DirectoryLookup.maximumUsers, unique.count)])
            found.merge(try await lookupChunk(chunk)) { first, _ in first }
        }
        return found
    }

    private func lookupChunk(_ users: [String]) async throws(DirectoryError) -> [String: Int64] {
        guard let writer else {
            throw DirectoryError("the login center's directory is not connected")
        }
        nextID += 1
        let id = nextID
        let request = DirectoryLookup(id: id, users: users).packet
        let timeout = settings.timeout
        let result = await withCheckedContinuation { continuation in
            pending[id] = continuation
            Task {
                do { try await writer.write(request) } catch {
                    self.resolve(id, .failure(DirectoryError("the directory link failed while sending a lookup")))
                }
            }
            Task {
                try? await Task.sleep(for: timeout)
                self.resolve(id, .failure(DirectoryError("the login center's directory did not answer within \(timeout)")))
            }
        }
        return try result.get()
    }

    private func resolve(_ id: Int64, _ result: Result<[String: Int64], DirectoryError>) {
        pending.removeValue(forKey: id)?.resume(returning: result)
    }

    public func run(notices: @escaping @Sendable (AccountNotice) async -> Void) async {
        var backoff = ReconnectBackoff(initial: settings.reconnectFirstDelay, maximum: settings.reconnectMaximumDelay)
        while !Task.isCancelled {
            do {
                try await connectOnce(backoff: &backoff, notices: notices)
                noteDown("the login center closed the link")
            } catch is CancellationError {
                break
            } catch {
                noteDown(LinkChannel.describe(error))
            }
            do { try await Task.sleep(for: backoff.next()) } catch { break }
        }
        noteDown(nil)
    }

    private func connectOnce(backoff: inout ReconnectBackoff, notices: @escaping @Sendable (AccountNotice) async -> Void) async throws {
        let link = try await LinkChannel.connect(
            host: settings.host, port: settings.port, serverName: settings.serverName, protection: settings.protection)
        try await link.executeThenClose { inbound, outbound in
            try await outbound.write(LinkHello(node: settings.node, domain: settings.domain).packet)
            let expected = generation + 1
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { await self.closeUnlessWelcomed(link.channel, generation: expected) }
                var packets = inbound.makeAsyncIterator()
                guard let first = try await packets.next() else {
                    throw DirectoryError("the login center closed the directory link before welcoming it")
                }
                switch LinkMessageType(rawValue: first.type) {
                case .welcome: break
                case .refused:
                    let refused = try LinkRefused(packet: first)
                    throw DirectoryError("the login center refused the directory link: \(refused.message) (\(refused.code.rawValue))")
                default:
                    throw DirectoryError("the login center answered LinkHello with message \(first.type)")
                }
                generation = expected
                writer = outbound
                lastHeard = .now
                outageLogged = false
                backoff.reset()
                logger.notice("directory link up", metadata: ["login_center": "\(settings.serverName)", "address": "\(settings.host):\(settings.port)"])
                group.addTask { await self.keepAlive(link.channel, outbound: outbound) }
                while let packet = try await packets.next() {
                    lastHeard = .now
                    await handle(packet, outbound: outbound, notices: notices)
                }
                group.cancelAll()
            }
        }
    }

    private func handle(_ packet: Packet, outbound: NIOAsyncChannelOutboundWriter<Packet>, notices: @Sendable (AccountNotice) async -> Void) async {
        do {
            switch LinkMessageType(rawValue: packet.type) {
            case .directoryAnswer:
                let answer = try DirectoryAnswer(packet: packet)
                resolve(answer.id, .success(answer.found))
            case .accountNotice:
                await notices(try AccountNotice(packet: packet))
            case .ping:
                try await outbound.write(LinkPong(time: try LinkPing(packet: packet).time).packet)
            case .pong:
                break
            default:
                logger.warning("unexpected message on the directory link", metadata: ["type": "\(packet.type)"])
            }
        } catch {
            logger.warning("malformed message on the directory link", metadata: ["type": "\(packet.type)", "error": "\(error)"])
        }
    }

    /// Closes the link if the login center has not welcomed it within the lookup timeout.
    private func closeUnlessWelcomed(_ channel: any Channel, generation expected: Int) async {
        do { try await Task.sleep(for: settings.timeout) } catch { return }
        if generation < expected {
            logger.warning("the login center did not welcome the directory link in time; reconnecting")
            channel.close(promise: nil)
        }
    }

    /// Pings every interval; closes the link once the login center has been silent for three.
    private func keepAlive(_ channel: any Channel, outbound: NIOAsyncChannelOutboundWriter<Packet>) async {
        do {
            while true {
                try await Task.sleep(for: settings.pingInterval)
                if lastHeard.duration(to: .now) > settings.pingInterval * 3 {
                    logger.warning("the login center has been silent for three ping intervals; reconnecting the directory link")
                    channel.close(promise: nil)
                    return
                }
                try await outbound.write(LinkPing(time: 0).packet)
            }
        } catch {
            return  // Cancelled with the link, or the link is gone.
        }
    }

    /// The link is down: lookups waiting for it fail now rather than at their timeout.
    private func noteDown(_ reason: String?) {
        let wasUp = writer != nil
        writer = nil
        if reason != nil { Counter(label: "myim_link_errors_total", dimensions: [("link", "directory")]).increment() }
        for (id, _) in pending {
            resolve(id, .failure(DirectoryError("the directory link went down")))
        }
        guard let reason else { return }
        if wasUp || !outageLogged {
            logger.warning("directory link down; reconnecting", metadata: ["reason": "\(reason)"])
            outageLogged = true
        } else {
            logger.debug("directory link attempt failed", metadata: ["reason": "\(reason)"])
        }
    }
}
