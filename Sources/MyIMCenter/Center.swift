import Logging
import Metrics
import MyIMLink
import MyIMPresence
import MyIMWire
import NIOCore
import Synchronization

/// The center of one domain: it binds sessions (the newest login of a user wins), routes
/// `user@domain` between its endpoints, and keeps 1:1 messages until they are acknowledged.
///
/// Its session table is the routing table: every session of the domain is opened and closed
/// through this actor, so routing a message costs no Redis round trip. Redis holds the same
/// facts for operators (`redis-cli`) and so that a crashed endpoint's users expire by TTL.
public actor Center {
    struct Session {
        var info: SessionInfo
        var endpoint: String
        /// The link it was bound on: a link that goes down closes its own sessions only, not
        /// those its endpoint's next link has bound again meanwhile.
        var link: Int?
        /// Queued messages have been flushed; live deliveries go straight out.
        var ready = false
        /// A live delivery was skipped while the flush ran: flush again before ready.
        var missed = false
        var status: PresenceStatus = .online
    }

    struct Link {
        var id: Int
        var outbox: LinkOutbox
    }

    public nonisolated let configuration: CenterConfiguration
    public nonisolated let store: CenterStore
    let logger: Logger
    var sessions: [String: Session] = [:]
    var sessionByUser: [String: String] = [:]
    var links: [String: Link] = [:]
    var nextLinkID = 0
    /// `myim_messages_in_total` and `myim_messages_out_total{role="center", type}`.
    nonisolated let messagesIn = PacketCounters(label: "myim_messages_in_total", role: "center")
    nonisolated let messagesOut = PacketCounters(label: "myim_messages_out_total", role: "center")
    var userIDs: [String: Int64] = [:]
    var groupCache: [Int64: CachedGroup] = [:]
    /// Per group: group messages stored but not yet fanned out, sent strictly in sequence order.
    var fanOutQueues: [Int64: FanOutQueue] = [:]
    /// Link messages being handled now (each may wait on SQLite or Redis).
    private var inFlight = 0
    /// Link packets waiting in lanes, all links together: past ``laneLimit`` the links stop
    /// being read (TCP pushes back on the endpoints) until the lanes catch up.
    private nonisolated let queued = Mutex(0)
    private static let laneLimit = 10_000
    /// Set by ``drain(timeout:)``: new client requests are refused with 330.
    public private(set) var draining = false
    /// What the links' event loops route best-effort chats with (``routeOnLoop(_:endpoint:)``).
    nonisolated let routes = LiveRoutes()
    nonisolated let routedOnLoop = Atomic<Int>(0)
    /// Best-effort chats delivered on a link's event loop, without the actor, since the start.
    public nonisolated var chatsRoutedOnLoop: Int { routedOnLoop.load(ordering: .relaxed) }

    public init(configuration: CenterConfiguration, logger: Logger = Logger(label: "myim.center")) throws {
        self.configuration = configuration
        store = try CenterStore(path: configuration.databasePath)
        self.logger = logger
    }

    /// Binds the configured link address (port 0 picks one).
    public nonisolated func bind() async throws -> NIOAsyncChannel<NIOAsyncChannel<Packet, Packet>, Never> {
        try await LinkChannel.bind(
            host: configuration.host, port: configuration.port, protection: configuration.protection,
            leftEncoded: [LinkMessageType.fromClient.rawValue]
        ) { channel in
            // A link carries every client of its endpoint: a deep buffer before it pushes back
            // (``LinkOutbox/writable()``, and chats no longer routed on the loop), as the
            // endpoint's side has (NIO's default, 64 KiB, is a few hundred deliveries).
            try channel.syncOptions?.setOption(.writeBufferWaterMark, value: .init(low: 4 << 20, high: 8 << 20))
            try channel.pipeline.syncOperations.addHandler(LinkRoutingHandler(center: self))
        }
    }

    /// Serves every link the listener accepts until it closes or the task is cancelled.
    public nonisolated func serve(_ listener: NIOAsyncChannel<NIOAsyncChannel<Packet, Packet>, Never>) async throws {
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await self.sweepLoop() }
            group.addTask { try await self.groupSweepLoop() }
            group.addTask { try await self.deadEndpointLoop() }
            group.addTask { try await self.queueDepthLoop() }
            group.addTask { await self.configuration.directory.run { notice in await self.accountNotice(notice) } }
            try await listener.executeThenClose { inbound in
                for try await link in inbound {
                    group.addTask { await self.handleLink(link) }
                }
            }
        }
    }

    /// Sessions bound now (for tests and status).
    public var onlineUsers: [String] { sessionByUser.keys.sorted() }

    // MARK: - Links

    private nonisolated func handleLink(_ channel: NIOAsyncChannel<Packet, Packet>) async {
        var registered: (node: String, id: Int)?
        do {
            let intake = try await channel.channel.eventLoop.submit {
                try channel.channel.pipeline.syncOperations.handler(type: LinkRoutingHandler.self).intake
            }.get()
            try await channel.executeThenClose { inbound, outbound in
                var packets = inbound.makeAsyncIterator()
                let domain = configuration.domain
                let endpoints = configuration.endpoints
                guard let hello = try await LinkChannel.acceptHello(&packets, outbound: outbound, channel: channel.channel, admit: { hello in
                    hello.domain == domain && endpoints.contains(hello.node)
                        ? nil : "\(hello.node)@\(hello.domain) is not an endpoint of \(domain) in this topology"
                }) else {
                    logger.warning("link refused", metadata: ["peer": "\(channel.channel.remoteAddress?.description ?? "?")"])
                    return
                }
                // Welcomed before anything the center sends the endpoint through the link's outbox.
                try await outbound.write(LinkWelcome(node: configuration.node, time: configuration.clock()).packet)
                let id = await register(node: hello.node, outbox: LinkOutbox(channel: channel.channel))
                registered = (hello.node, id)
                for info in hello.sessions { await open(info, endpoint: hello.node, rebinding: true) }
                intake.admit(hello.node)
                try await serveLanes(&packets, from: hello.node, sessions: hello.sessions, intake: intake)
            }
        } catch {
            // A peer that never said who it is (a port probe, a failed TLS handshake) is not news.
            logger.log(level: registered == nil ? .debug : .notice, "link ended", metadata: [
                "endpoint": "\(registered?.node ?? "-")", "error": "\(error)",
            ])
        }
        if let registered { await unregister(node: registered.node, id: registered.id) }
    }

    /// Handles a link's packets in lanes, one per user: a user's session opens, requests and
    /// closes in the order they came (an acknowledgement sent just before a reconnect is
    /// applied before the new session's backlog is read), different users' at the same time,
    /// so that one user's SQLite write does not hold up the others (concurrent sends then
    /// share a commit). Link messages are handled as they come.
    ///
    /// A lane has a task only while it has packets: an idle session costs a queue entry here,
    /// not a suspended task.
    ///
    /// Each session packet handled (or dropped) is told to `intake`, which holds the session's
    /// best-effort chats back from the event loop's route while its earlier packets wait here.
    private nonisolated func serveLanes(
        _ packets: inout NIOAsyncChannelInboundStream<Packet>.AsyncIterator, from node: String, sessions known: [SessionInfo],
        intake: LinkIntake
    ) async throws {
        /// Handles a packet that takes no lane.
        func handleNow(_ packet: Packet) async {
            await handle(packet, from: node)
            Self.handled(packet, intake: intake)
        }
        try await withThrowingDiscardingTaskGroup { group in
            var lanes: [String: (lane: Lane, sessions: Int)] = [:]
            /// Users whose last session closed while their lane was still busy: dropped once idle.
            var retiring: Set<String> = []
            /// Swept when it has grown to this size, so that a mass close (a draining endpoint)
            /// costs each close O(1) and not a scan of every retiring user.
            var sweepAt = 64
            var userOfSession = Dictionary(known.map { ($0.session, $0.user) }, uniquingKeysWith: { first, _ in first })
            for info in known { lanes[info.user, default: (Lane(), 0)].sessions += 1 }
            while let packet = try await packets.next() {
                let user: String
                switch LinkMessageType(rawValue: packet.type) {
                case .sessionOpen:
                    guard let info = try? SessionOpen(packet: packet).info else {
                        await handleNow(packet)  // Malformed: logged there.
                        continue
                    }
                    user = info.user
                    if userOfSession.updateValue(user, forKey: info.session) == nil {
                        lanes[user, default: (Lane(), 0)].sessions += 1
                        retiring.remove(user)
                    }
                case .fromClient, .sessionClose:
                    guard let session = LinkIntake.session(of: packet), let owner = userOfSession[session] else {
                        await handleNow(packet)  // A session this link never opened: refused there.
                        continue
                    }
                    user = owner
                    if packet.type == LinkMessageType.sessionClose.rawValue { userOfSession[session] = nil }
                default:
                    await handleNow(packet)
                    continue
                }
                guard let lane = lanes[user]?.lane else {
                    Self.handled(packet, intake: intake)
                    continue
                }
                while queued.withLock({ $0 }) >= Self.laneLimit { try await Task.sleep(for: .milliseconds(1)) }
                queued.withLock { $0 += 1 }
                if lane.push(packet) {
                    group.addTask {
                        while let next = lane.next() {
                            await self.handle(next, from: node)
                            Self.handled(next, intake: intake)
                            self.queued.withLock { $0 -= 1 }
                        }
                    }
                }
                if packet.type == LinkMessageType.sessionClose.rawValue, let remaining = lanes[user]?.sessions {
                    lanes[user]?.sessions = remaining - 1
                    if remaining <= 1 { retiring.insert(user) }
                    // A lane still busy keeps its place, so that a new session of the user
                    // queues behind what is left of the old one.
                    if retiring.count >= sweepAt {
                        for idle in retiring where lanes[idle]?.sessions == 0 && lanes[idle]?.lane.isIdle == true {
                            lanes[idle] = nil
                            retiring.remove(idle)
                        }
                        sweepAt = max(64, retiring.count * 2)
                    }
                }
            }
        }
    }

    /// Tells `intake` that a session's packet is handled.
    private static func handled(_ packet: Packet, intake: LinkIntake) {
        guard let session = LinkIntake.session(of: packet) else { return }
        intake.handled(session)
    }

    /// One user's link packets waiting to be handled, in order. ``push(_:)`` says when a task
    /// must be started for them; that task takes packets with ``next()`` until none is left.
    private final class Lane: Sendable {
        private let state = Mutex<(packets: CircularBuffer<Packet>, running: Bool)>((CircularBuffer(initialCapacity: 4), false))

        /// Queues `packet`; `true` when no task is handling this lane and one must be started.
        func push(_ packet: Packet) -> Bool {
            state.withLock { state in
                state.packets.append(packet)
                guard !state.running else { return false }
                state.running = true
                return true
            }
        }

        /// The next packet, or nil when there is none (the lane's task then ends).
        func next() -> Packet? {
            state.withLock { state in
                if let packet = state.packets.popFirst() { return packet }
                state.running = false
                return nil
            }
        }

        var isIdle: Bool { state.withLock { !$0.running && $0.packets.isEmpty } }
    }

    private func register(node: String, outbox: LinkOutbox) -> Int {
        nextLinkID += 1
        if links[node] != nil { logger.notice("endpoint linked again; the older link is replaced", metadata: ["endpoint": "\(node)"]) }
        links[node] = Link(id: nextLinkID, outbox: outbox)
        routes.linked(node, outbox: outbox)
        logger.info("endpoint linked", metadata: ["endpoint": "\(node)"])
        return nextLinkID
    }

    /// A link went down: unless a newer link of that endpoint replaced it, its sessions end.
    private func unregister(node: String, id: Int) async {
        guard links[node]?.id == id else { return }
        links[node] = nil
        routes.unlinked(node)
        logger.notice("endpoint link down; its sessions go offline", metadata: ["endpoint": "\(node)"])
        for (sessionID, session) in sessions where session.endpoint == node && session.link == id {
            // Each close waits on Redis and SQLite: the endpoint may relink and bind the
            // session again meanwhile (then it is no longer this link's).
            guard sessions[sessionID]?.link == id else { continue }
            await close(sessionID, reason: "endpoint link down")
        }
    }

    private func handle(_ packet: Packet, from endpoint: String) async {
        inFlight += 1
        defer { inFlight -= 1 }
        do {
            switch LinkMessageType(rawValue: packet.type) {
            case .sessionOpen: await open(try SessionOpen(packet: packet).info, endpoint: endpoint)
            case .sessionClose:
                let message = try SessionClose(packet: packet)
                await close(message.session, reason: message.reason)
            case .fromClient: await request(try FromClient(packet: packet), from: endpoint)
            case .ping: await send(LinkPong(time: try LinkPing(packet: packet).time).packet, toEndpoint: endpoint)
            case .pong: break
            default:
                logger.warning("unexpected link message", metadata: ["endpoint": "\(endpoint)", "type": "\(packet.type)"])
            }
        } catch {
            logger.warning("malformed link message", metadata: ["endpoint": "\(endpoint)", "error": "\(error)"])
        }
    }

    // MARK: - Sessions

    /// Binds a session; an older session of the same user is kicked (the newer login wins).
    ///
    /// `rebinding`: the endpoint already holds the session bound (it relinked, after a center
    /// restart or a dropped link) and ignores the message 10 in `SessionReady`; everything
    /// queued is then sent as 18, so that a message stored while the link was down reaches
    /// the live session rather than waiting for its next login. What the client already had
    /// comes again, and it drops duplicates by server id (the at-least-once contract).
    func open(_ info: SessionInfo, endpoint: String, rebinding: Bool = false) async {
        let now = configuration.clock()
        if rebinding, let current = sessionByUser[info.user], current != info.session, let newer = sessions[current],
           newer.info.since > info.since
        {
            // The user logged in again elsewhere while this endpoint's link was down: the
            // newer login stays, the session coming back is the one to go.
            await send(KickSession(session: info.session, reason: "a newer login of \(info.user) took over").packet, toEndpoint: endpoint)
            logger.info("re-bound session kicked: a newer login holds the user", metadata: ["user": "\(info.user)", "session": "\(info.session)"])
            return
        }
        if let older = sessionByUser[info.user], older != info.session, let session = sessions[older] {
            await send(KickSession(session: older, reason: "a newer login of \(info.user) took over").packet, toEndpoint: session.endpoint)
            sessions[older] = nil
            routes.gone(older, user: info.user)
            logger.info("older session kicked", metadata: ["user": "\(info.user)", "session": "\(older)"])
        }
        sessions[info.session] = Session(info: info, endpoint: endpoint, link: links[endpoint]?.id)
        sessionByUser[info.user] = info.session
        if info.userID != 0 { userIDs[info.user] = info.userID }
        routes.bound(
            info.session, user: info.user, userID: userIDs[info.user] ?? 0, endpoint: endpoint, senderCopies: info.senderCopies)
        // Not waited for: last-seen times are written in batches. The user id is in
        // `userIDs` already, so nothing here depends on the row being written.
        store.recordLastSeen(user: info.user, userID: info.userID, now: now, failed: lastSeenFailed(user: info.user))
        do {
            let entry = PresenceEntry(user: info.user, endpoint: endpoint, session: info.session, device: info.device, since: info.since)
            if let previous = try await configuration.presence.setOnline(entry, ttlSeconds: configuration.presenceTTL),
               previous.session != info.session, sessions[previous.session] == nil
            {
                // Bound before this center started (a restart): that endpoint may still hold it.
                await send(KickSession(session: previous.session, reason: "a newer login took over").packet, toEndpoint: previous.endpoint)
            }
        } catch {
            logger.error("presence failed at session open", metadata: ["user": "\(info.user)", "error": "\(error)"])
            Counter(label: "myim_redis_errors_total", dimensions: [("role", "center")]).increment()
        }
        do {
            let opening = try store.opening(of: info.user, limit: configuration.initialBatch)
            let friends = opening.friends
            let unread = opening.unread
            let groups = opening.groups.map { group, membership in
                (entry: GroupEntry(groupName: group.name, groupID: group.id), after: membership.deliveredSeq)
            }
            let initial = InitialState(
                friends: friends.map { FriendEntry(username: $0.username, userID: $0.userID) }, groups: groups.map(\.entry), messages: unread)
            guard sessions[info.session] != nil else { return }
            await send(SessionReady(session: info.session, initial: initial.body).packet, toEndpoint: endpoint)
            await flush(
                info.session, after: rebinding ? 0 : unread.last?.serverMessageID ?? 0,
                continuing: rebinding || unread.count == configuration.initialBatch,
                groups: Dictionary(groups.map { ($0.entry.groupID, $0.after) }, uniquingKeysWith: { first, _ in first }))
            await notifyFriends(of: info.user, online: true, status: .online, friends: friends)
            logger.info("session open", metadata: ["user": "\(info.user)", "session": "\(info.session)", "endpoint": "\(endpoint)"])
        } catch {
            logger.error("session open failed", metadata: ["user": "\(info.user)", "error": "\(error)"])
        }
    }

    /// Sends every queued 1:1 message after `after`, then every group message past the
    /// member's cursor (`groups`: group id → last sequence received), as 18, then marks the
    /// session ready.
    ///
    /// A message stored while this runs is either in a later batch or marks the session
    /// `missed` (``deliverLive(_:to:)``, the group fan-out), which makes this query again (and
    /// look for groups joined meanwhile): nothing falls between the flush and the live path.
    /// `ready` is set with no suspension after the last check.
    private func flush(_ sessionID: String, after: Int64, continuing: Bool, groups: [Int64: Int64]) async {
        var cursor = after
        var groupCursors = groups
        var firstPass = true
        while firstPass || sessions[sessionID]?.missed == true {
            sessions[sessionID]?.missed = false
            guard let user = sessions[sessionID]?.info.user else { return }
            if !firstPass || continuing {
                var more = true
                while more {
                    guard let session = sessions[sessionID] else { return }
                    let batch = (try? await store.pending(for: user, after: cursor, limit: 500)) ?? []
                    for delivery in batch { await send(delivery.packet, toSessions: [sessionID], on: session.endpoint) }
                    cursor = batch.last?.serverMessageID ?? cursor
                    more = batch.count == 500
                }
            }
            if !firstPass, let current = try? await groupsAtOpen(of: user) {
                for (entry, delivered) in current where groupCursors[entry.groupID] == nil { groupCursors[entry.groupID] = delivered }
            }
            for (groupID, start) in groupCursors.sorted(by: { $0.key < $1.key }) {
                var groupCursor = start
                var more = true
                while more {
                    guard let session = sessions[sessionID] else { return }
                    let batch = (try? await store.groupMessages(groupID, after: groupCursor, limit: 500)) ?? []
                    for delivery in batch { await send(delivery.packet, toSessions: [sessionID], on: session.endpoint) }
                    groupCursor = batch.last?.seq ?? groupCursor
                    more = batch.count == 500
                }
                groupCursors[groupID] = groupCursor
            }
            firstPass = false
        }
        guard let session = sessions[sessionID] else { return }
        sessions[sessionID]?.ready = true
        routes.ready(sessionID, user: session.info.user, userID: userIDs[session.info.user] ?? 0, endpoint: session.endpoint)
    }

    func close(_ sessionID: String, reason: String) async {
        guard let session = sessions.removeValue(forKey: sessionID) else { return }
        let user = session.info.user
        routes.gone(sessionID, user: user)
        if sessionByUser[user] == sessionID { sessionByUser[user] = nil }
        let now = configuration.clock()
        do {
            _ = try await configuration.presence.setOffline(user: user, session: sessionID)
        } catch {
            logger.error("presence failed at session close", metadata: ["user": "\(user)", "error": "\(error)"])
            Counter(label: "myim_redis_errors_total", dimensions: [("role", "center")]).increment()
        }
        store.recordLastSeen(user: user, userID: session.info.userID, now: now, failed: lastSeenFailed(user: user))
        if sessionByUser[user] == nil { await notifyFriends(of: user, online: false, status: nil) }
        logger.info("session closed", metadata: ["user": "\(user)", "session": "\(sessionID)", "reason": "\(reason)"])
    }

    // MARK: - Sending

    /// Writes `packet` on the endpoint's link (nothing when it has none: its sessions are
    /// offline), then waits while that endpoint reads slower than it is sent to.
    func send(_ packet: Packet, toEndpoint endpoint: String) async {
        guard let link = links[endpoint] else { return }
        link.outbox.write(packet)
        await link.outbox.writable()
    }

    func send(_ packet: Packet, toSessions sessions: [String], on endpoint: String) async {
        messagesOut.increment(packet.type, by: sessions.count)
        await send(ToClient(sessions: sessions, payload: packet).packet, toEndpoint: endpoint)
    }

    /// Replies to the session that made a request.
    func reply(_ message: some WireMessage, to sessionID: String) async {
        guard let session = sessions[sessionID] else { return }
        await send(message.packet, toSessions: [sessionID], on: session.endpoint)
    }

    /// Delivers to a user's live session, if it is bound and ready; marks it otherwise.
    /// Returns whether it went out.
    @discardableResult
    func deliverLive(_ packet: Packet, to user: String) async -> Bool {
        guard let sessionID = sessionByUser[user], let session = sessions[sessionID] else { return false }
        guard session.ready else {
            sessions[sessionID]?.missed = true
            return false
        }
        await send(packet, toSessions: [sessionID], on: session.endpoint)
        return true
    }

    /// What a failed last-seen write does: it is logged, and the time is lost.
    private nonisolated func lastSeenFailed(user: String) -> @Sendable (any Error) -> Void {
        let logger = logger
        return { error in logger.error("last-seen time not written", metadata: ["user": "\(user)", "error": "\(error)"]) }
    }

    /// Tells `user`'s online friends that it came or went; `friends` when the caller has them.
    private func notifyFriends(of user: String, online: Bool, status: PresenceStatus?, friends known: [FriendEntry]? = nil) async {
        let friends: [FriendEntry]
        if let known {
            friends = known
        } else {
            guard let read = try? store.friends(of: user) else { return }
            friends = read
        }
        let notice = FriendPresenceNotice(username: user, online: online, status: status, time: configuration.clock()).packet
        var byEndpoint: [String: [String]] = [:]
        for friend in friends {
            guard let sessionID = sessionByUser[friend.username], let session = sessions[sessionID], session.ready else { continue }
            byEndpoint[session.endpoint, default: []].append(sessionID)
        }
        for (endpoint, sessionIDs) in byEndpoint {
            await send(notice, toSessions: sessionIDs, on: endpoint)
        }
    }

    /// A login center notice: a login from a new device is told to the user's online session
    /// as message 38, unless that session is the new device's own.
    func accountNotice(_ notice: AccountNotice) async {
        guard let sessionID = sessionByUser[notice.user], let session = sessions[sessionID], session.info.device != notice.device else { return }
        let message: String
        switch notice.kind {
        case "new_device":
            message = "\(notice.user) logged in from a new device\(notice.source.map { " at \($0)" } ?? ""); if it was not you, change your password"
        default:
            message = "account event: \(notice.kind)"
        }
        let alert = SecurityAlert(kind: notice.kind, time: notice.time, message: message, device: notice.device, address: notice.source)
        await send(alert.packet, toSessions: [sessionID], on: session.endpoint)
        logger.info("security alert sent", metadata: ["user": "\(notice.user)", "kind": "\(notice.kind)", "session": "\(sessionID)"])
    }

    /// A graceful shutdown: client requests that arrive from now on are refused with 330
    /// (the client retries them, with the same ids, once the center is back); returns once the
    /// link messages being handled have finished their writes, or after `timeout`. Then cancel
    /// ``serve(_:)``: the links close, and the endpoints reconnect when the center is back.
    public func drain(timeout: Duration = .seconds(10)) async {
        draining = true
        routes.drain()
        let deadline = ContinuousClock.now + timeout
        logger.notice("draining: finishing in-flight work", metadata: ["in_flight": "\(inFlight)"])
        while inFlight > 0 || queued.withLock({ $0 }) > 0, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
        await store.lastSeenWritten()  // The times of the sessions that just closed.
        logger.notice("drained", metadata: ["in_flight_left": "\(inFlight)"])
    }

    // MARK: - Housekeeping

    /// What the center holds now, for `/health` and `myim status`.
    public func figures() async -> [String: Int] {
        var figures = ["sessions": sessions.count, "endpoints_linked": links.count]
        if let direct = try? await store.pendingCount() { figures["offline_messages"] = direct }
        if let group = try? await store.groupMessageCount() { figures["group_messages"] = group }
        return figures
    }

    /// Every 10 s: `myim_offline_queue_depth{kind}` and `myim_sessions{role="center"}`.
    private func queueDepthLoop() async throws {
        let direct = Gauge(label: "myim_offline_queue_depth", dimensions: [("kind", "direct")])
        let group = Gauge(label: "myim_offline_queue_depth", dimensions: [("kind", "group")])
        let bound = Gauge(label: "myim_sessions", dimensions: [("role", "center")])
        while !Task.isCancelled {
            if let count = try? await store.pendingCount() { direct.record(count) }
            if let count = try? await store.groupMessageCount() { group.record(count) }
            bound.record(sessions.count)
            try await Task.sleep(for: .seconds(10))
        }
    }

    /// Every TTL: endpoints that stopped heartbeating (killed, never restarted) and hold no
    /// link here are forgotten in Redis: their user sets and their entries in the endpoint
    /// index. Their users' presence entries have expired by then.
    private func deadEndpointLoop() async throws {
        while !Task.isCancelled {
            try await Task.sleep(for: .seconds(configuration.presenceTTL))
            do {
                for endpoint in try await configuration.presence.deadEndpoints(domain: configuration.domain) where links[endpoint] == nil {
                    let offline = try await configuration.presence.removeEndpoint(endpoint)
                    logger.notice("dead endpoint forgotten", metadata: ["endpoint": "\(endpoint)", "users_offline": "\(offline.count)"])
                }
            } catch {
                logger.warning("dead endpoint sweep failed", metadata: ["error": "\(error)"])
            }
        }
    }

    private func sweepLoop() async throws {
        while !Task.isCancelled {
            try await Task.sleep(for: .seconds(3600))
            let removed = try? await store.sweepSent(before: configuration.clock() - configuration.dedupRetention)
            logger.info("swept client message ids", metadata: ["removed": "\(removed ?? 0)"])
        }
    }
}
