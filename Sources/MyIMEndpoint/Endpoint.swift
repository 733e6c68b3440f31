import Foundation
import Logging
import Metrics
import MyIMAuth
import MyIMLink
import MyIMPresence
import MyIMTransport
import MyIMWire
import NIOCore
import Synchronization

/// An endpoint: holds client connections for one domain and relays them to its center.
///
/// Clients connect over the secure channel, authenticate with a token from the login center
/// (verified offline), and are then relayed to the domain's center over one ``CenterLink``.
/// Presence TTLs of the users held here are refreshed by a heartbeat. See
/// `docs/ARCHITECTURE.md` (the endpoint) for the decisions.
///
/// Run it as the login center runs: ``bind()``, then ``serve(_:)`` until the listener closes or
/// the task is cancelled; ``shutdown()`` closes the listener from elsewhere.
public final class Endpoint: Sendable {
    public let configuration: EndpointConfiguration
    let logger: Logger
    let verifier: TokenVerifier
    let table: SessionTable
    let link: CenterLink
    let limiter: SourceLimiter
    let counters = EndpointCounters()
    private let listener = Mutex<ClientListener?>(nil)

    public init(configuration: EndpointConfiguration, logger: Logger = Logger(label: "myim.endpoint")) async {
        var logger = logger
        logger[metadataKey: "node"] = "\(configuration.node)"
        self.configuration = configuration
        self.logger = logger
        verifier = await TokenVerifier(publicKey: configuration.tokenPublicKey, issuer: configuration.issuer)
        table = SessionTable(node: configuration.node, clock: configuration.clock)
        link = CenterLink(configuration: configuration, table: table, logger: logger)
        limiter = SourceLimiter(maximum: configuration.maxConnectionsPerSource)
    }

    /// Binds the configured address (port 0 picks one) and returns the listener to ``serve(_:)``.
    public func bind() async throws -> ClientListener {
        let bound = try await EndpointListener.bind(self)
        listener.withLock { $0 = bound }
        return bound
    }

    /// Keeps the link to the center and the presence heartbeat going while the listener's
    /// connections are served (``ClientSessionHandler``), until the listener closes or the task
    /// is cancelled; then closes every connection, waits for their sessions to end, and stops
    /// the link and the heartbeat.
    ///
    /// Before anyone is served it clears what a previous run of this node left in presence
    /// (`removeEndpoint`), as `PresenceStore` asks of a restarting endpoint. Connections
    /// accepted meanwhile wait, pending, for the link like any other.
    public func serve(_ listener: ClientListener) async throws {
        await clearStalePresence()
        await withDiscardingTaskGroup { group in
            group.addTask { await self.link.run() }
            group.addTask { await self.heartbeat() }
            await withTaskCancellationHandler {
                try? await listener.channel.closeFuture.get()
            } onCancel: {
                listener.channel.close(promise: nil)
            }
            await listener.closeAll()
            // Each closed connection leaves the table in a task of its own, then tells the center.
            let deadline = ContinuousClock.now + .seconds(2)
            while table.count > 0, ContinuousClock.now < deadline {
                try? await Task.sleep(for: .milliseconds(10))
            }
            group.cancelAll()
        }
    }

    /// Closes the listener: ``serve(_:)`` then closes every connection and stops the link and
    /// the heartbeat.
    public func shutdown() async throws {
        let bound = listener.withLock { $0 }
        await bound?.closeAll()
    }

    /// A graceful shutdown: every client, and every one that connects from now on, is sent
    /// 48 (reconnect, naming the next endpoint by priority) after what is already queued for
    /// it, and closed; returns once every session has ended and told the center, or after
    /// ``EndpointConfiguration/drainTimeout``. Then cancel ``serve(_:)``.
    public func drain() async {
        let notice = Reconnect(reason: "\(configuration.node) is shutting down", next: configuration.peers.first)
        let open = table.closeAll(with: notice.packet, reason: "the endpoint is shutting down")
        logger.notice("draining: clients are told to reconnect elsewhere", metadata: [
            "sessions": "\(open)", "next": "\(configuration.peers.first ?? "-")",
        ])
        let deadline = ContinuousClock.now + configuration.drainTimeout
        while table.count > 0, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        let left = table.count
        // Each ended session's SessionClose goes out after it leaves the table.
        try? await Task.sleep(for: .milliseconds(100))
        logger.notice("drained", metadata: ["sessions_left": "\(left)"])
    }

    /// Sessions held right now (pending ones included).
    public var sessionCount: Int {
        get async { table.count }
    }

    /// Whether the center has welcomed the current link.
    public var isLinkUp: Bool {
        get async { await link.isUp }
    }

    // MARK: - Presence

    private func clearStalePresence() async {
        do {
            let gone = try await configuration.presence.removeEndpoint(configuration.node)
            if !gone.isEmpty {
                logger.notice("cleared presence left by a previous run", metadata: ["users": "\(gone.count)"])
            }
        } catch {
            logger.warning("cannot clear this endpoint's old presence", metadata: ["error": "\(error)"])
        }
    }

    /// `users` in `ceil(count / size)` slices (one, empty, when there are none), each user once:
    /// about `size` each. A user's hash is a fixed point of the round, and its slice is the one
    /// covering that point, so the user keeps its place in the round when the number of slices
    /// changes (it moves by less than one slice's pause), where a remainder would send nearly
    /// everyone elsewhere. A user listed twice (two devices here) is kept once.
    static func heartbeatSlices(of users: [String], about size: Int) -> [[String]] {
        let count = max(1, (users.count + max(1, size) - 1) / max(1, size))
        var slices = [[String]](repeating: [], count: count)
        for user in users {
            slices[Int(UInt(bitPattern: user.hashValue).multipliedFullWidth(by: UInt(count)).high)].append(user)
        }
        return slices.map { slice in
            var seen = Set<String>(minimumCapacity: slice.count)
            return slice.filter { seen.insert($0).inserted }
        }
    }

    /// Every interval: this endpoint is alive, and its bound users stay online for another TTL.
    /// A failed heartbeat is logged and retried at the next interval; users go offline only if
    /// heartbeats keep failing for a whole TTL.
    private func heartbeat() async {
        while !Task.isCancelled {
            // In slices spread over the interval: a large endpoint does not load Redis (and the
            // host it shares) with every user at once, and no call holds Redis for long.
            // A user's place in the round comes from its hash, so that its refreshes stay about
            // an interval apart (no sort: sorting 7,500 names took the endpoint 8 ms in one go);
            // each slice starts at a fixed offset of the round, so that slow calls do not push the
            // later slices back.
            let slices = Self.heartbeatSlices(of: table.boundUsers(), about: configuration.heartbeatSlice)
            let pause = configuration.heartbeatInterval / slices.count
            let roundStart = ContinuousClock.now
            for (index, slice) in slices.enumerated() {
                do {
                    try await configuration.presence.heartbeat(endpoint: configuration.node, users: slice, ttlSeconds: configuration.presenceTTL)
                } catch {
                    logger.warning("presence heartbeat failed", metadata: ["users": "\(slice.count)", "error": "\(error)"])
                    Counter(label: "myim_redis_errors_total", dimensions: [("role", "endpoint")]).increment()
                }
                do {
                    try await Task.sleep(until: roundStart + pause * (index + 1), clock: .continuous)
                } catch {
                    return
                }
            }
        }
    }
}
