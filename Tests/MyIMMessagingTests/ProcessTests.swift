import Foundation
import MyIMClient
import MyIMPresence
import MyIMRedis
import MyIMWire
import Synchronization
import Testing

/// The cluster as separate `myim` processes (see ``ProcessCluster``), killed with SIGKILL for
/// real: what the issue asks about presence after a crash and messages across a center restart.
///
/// They need `.build/debug/myim` (run `swift build` first; `make test` does) and redis-server.
@Suite("Processes", .serialized, .timeLimit(.minutes(3)))
struct ProcessesTests {
    /// The presence TTL the test topology gives the roles (`presence.ttlSeconds`; endpoints
    /// beat every third of it).
    static let presenceTTL = 6
    static let alice = "alice@\(ProcessCluster.domain)"
    static let bob = "bob@\(ProcessCluster.domain)"

    // MARK: - Presence after SIGKILL

    /// Only the endpoint dies: the center sees its link drop and takes its users offline at once,
    /// long before the TTL; the user comes back through the other endpoint.
    @Test func anEndpointKilledAloneIsTakenOfflineByTheCenterAtOnce() async throws {
        try await ProcessCluster.run { cluster in
            try await cluster.register("bob")
            let session = try await cluster.login("bob")
            let bob = try await cluster.connect(session, name: "bob", to: .ep1)
            let entry = try await cluster.waitForPresence(of: "bob", timeout: .seconds(5))
            try #require(entry["endpoint"] == "alpha-ep1")
            try #require(entry["session"]?.hasPrefix("alpha-ep1:") == true)

            let killedAt = ContinuousClock.now
            try await cluster.kill(.ep1)
            let gone = try await cluster.waitForNoPresence(of: "bob", until: killedAt + .seconds(5))
            guard let clearedAt = gone else {
                let left = try await cluster.presence(of: "bob")
                throw ProcessTestError("""
                    bob is still online in Redis 5 s after alpha-ep1 was killed (\(left)); the center should clear \
                    presence as soon as the endpoint's link drops, not wait for the \(Self.presenceTTL) s TTL
                    """)
            }
            let members = try await cluster.redisCommand(["SMEMBERS", "myim:\(ProcessCluster.domain):endpoint:alpha-ep1:users"])
            try #require(members.array?.compactMap(\.string).contains("bob") == false, "bob is still in alpha-ep1's user set")

            // The client sees its connection end, and bob comes back through the other endpoint.
            let closedBy = ContinuousClock.now + .seconds(5)
            while await bob.closedReason == nil, ContinuousClock.now < closedBy {
                try await Task.sleep(for: .milliseconds(20))
            }
            try #require(await bob.closedReason != nil, "bob's connection to the killed endpoint did not end")
            let again = try await cluster.connect(session, name: "bob", to: .ep2)
            let back = try await cluster.waitForPresence(of: "bob", timeout: .seconds(5))
            try #require(back["endpoint"] == "alpha-ep2")
            try await again.quit()
            try #require(try await cluster.waitForNoPresence(of: "bob", until: .now + .seconds(5)) != nil, "a quit left bob online")
            print("Processes: presence cleared \(killedAt.duration(to: clearedAt)) after SIGKILL of the endpoint alone")
        }
    }

    /// SIGTERM to the endpoint that alice and bob use, in the middle of a stream of QoS 1
    /// messages: both get 48, reconnect to the other endpoint, alice sends again what had no
    /// 8 (same client ids), and bob ends up with every message exactly once; the endpoint
    /// drains and exits 0 within its bound.
    @Test func anEndpointStoppedWithSIGTERMMovesItsClientsAndLosesNothing() async throws {
        try await ProcessCluster.run { cluster in
            try await cluster.register("alice")
            try await cluster.register("bob")
            let alice = try await cluster.connect(try await cluster.login("alice"), name: "alice", to: .ep1, options: Self.aliceOptions)
            let bob = try await cluster.connect(try await cluster.login("bob"), name: "bob", to: .ep1)
            let inbox = ProcessTestFollowingInbox()
            let receiver = Task { await inbox.receive(starting: bob) }

            let count = 40
            var sender = alice
            var notices: [Reconnect] = []
            var accepted: [String: Int64] = [:]
            for index in 0..<count {
                if index == 10 { try cluster.process(.ep1).signal(SIGTERM) }
                let id = "drain-\(index)"
                for attempt in 0..<3 {
                    do {
                        accepted[id] = try await sender.send(.text(Self.text(index)), to: Self.bob, clientMessageID: id).serverMessageID
                        break
                    } catch {
                        // The endpoint said 48 and closed: the same message, same id, through the next one.
                        try #require(attempt < 2, "message \(index) failed three times: \(error)")
                        var notice: Reconnect?
                        while let event = await sender.next(timeout: .milliseconds(200)) {
                            if case .reconnect(let received) = event { notice = received }
                        }
                        let received = try #require(notice, "alice's send failed without a 48 first: \(error)")
                        notices.append(received)
                        sender = try await sender.reconnect(after: received)
                    }
                }
            }
            try #require(accepted.count == count)
            try await cluster.waitFor("bob has every message", timeout: .seconds(20)) { inbox.clientIDs.count == count }
            inbox.stop()
            await receiver.value

            let ep1 = try cluster.process(.ep1)
            try #require(await ep1.waitForExit(timeout: .seconds(15)), "alpha-ep1 did not exit within 15 s of SIGTERM")
            #expect(ep1.terminationStatus == 0, "alpha-ep1 \(ep1.exitDescription)")
            #expect(ep1.output.contains("drained"))
            #expect(notices.first?.next == "alpha-ep2", "48 names the next endpoint by priority")
            #expect(sender.endpoint.name == "alpha-ep2")
            #expect(inbox.endpoints.last == "alpha-ep2" && inbox.reconnects == 1)
            // Exactly once: every id has one server id, the one alice was given, and bob shows each once.
            #expect(inbox.shownClientIDs.count == count && Set(inbox.shownClientIDs).count == count)
            for (id, serverID) in accepted {
                #expect(inbox.serverIDs(of: id) == [serverID], "\(id)")
            }
            try await sender.quit()
            try await inbox.connection.quit()
            print("Processes: SIGTERM mid-stream: alice reconnected \(notices.count) time(s), bob once; \(inbox.redeliveries) redelivery(ies) dropped by server id")
        }
    }

    /// `myim status` sees every role up, then reports the stopped endpoint down and exits 1;
    /// `myim health` answers per node the same way.
    @Test func statusReportsAStoppedEndpointDownAndExitsNonZero() async throws {
        try await ProcessCluster.run { cluster in
            let healthy = try await cluster.tool(["status", "--json"])
            try #require(healthy.status == 0, "myim status with every role up: \(healthy.output)\(healthy.errors)")
            let object = try #require(try JSONSerialization.jsonObject(with: Data(healthy.output.utf8)) as? [String: Any])
            let roles = try #require(object["roles"] as? [[String: Any]])
            #expect(roles.count == 4 && roles.allSatisfy { $0["up"] as? Bool == true })

            try await cluster.kill(.ep2)
            let degraded = try await cluster.tool(["status"])
            #expect(degraded.status == 1, "myim status with alpha-ep2 down exits 1")
            let line = try #require(degraded.output.split(separator: "\n").first { $0.contains("alpha-ep2") })
            #expect(line.contains("DOWN"), "\(degraded.output)")
            #expect(degraded.output.split(separator: "\n").first { $0.contains("alpha-ep1") }?.contains(" up ") == true)
            #expect(try await cluster.tool(["health", "--node", "alpha-ep2"]).status == 1)
            #expect(try await cluster.tool(["health", "--node", "alpha-ep1"]).status == 0)
        }
    }

    /// The endpoint and the center both die, so nobody removes the user on purpose: the entry
    /// stays until its TTL runs out, then goes, and the dead endpoint no longer counts as live.
    @Test func anEndpointKilledWithItsCenterLeavesNoGhostPresenceAfterTheTTL() async throws {
        try await ProcessCluster.run { cluster in
            try await cluster.register("bob")
            let session = try await cluster.login("bob")
            let bob = try await cluster.connect(session, name: "bob", to: .ep1)
            let entry = try await cluster.waitForPresence(of: "bob", timeout: .seconds(5))
            try #require(entry["endpoint"] == "alpha-ep1")
            let ttl = try #require(try await cluster.redisCommand(["TTL", ProcessCluster.presenceKey("bob")]).int)
            try #require((1...Int64(Self.presenceTTL)).contains(ttl), "the presence TTL is \(ttl) s, not at most \(Self.presenceTTL) s: update this test")

            let killedAt = ContinuousClock.now
            try await cluster.kill(.ep1, .center)
            await bob.close()

            // Nobody is left to clean up: 2 s later bob is still "online", as written before the kill.
            try await Task.sleep(for: .seconds(2))
            try #require(try await cluster.presence(of: "bob") == entry, "something other than the TTL removed bob's presence")

            let bound = Duration.seconds(Self.presenceTTL + 10)
            let gone = try await cluster.waitForNoPresence(of: "bob", until: killedAt + bound)
            guard let expiredAt = gone else {
                let left = try await cluster.presence(of: "bob")
                throw ProcessTestError("""
                    ghost presence: bob is still online \(bound) after his endpoint and the center were killed \
                    (HGETALL \(ProcessCluster.presenceKey("bob")): \(left))
                    """)
            }
            let alive = try await cluster.redisCommand(["EXISTS", "myim:\(ProcessCluster.domain):endpoint:alpha-ep1:alive"])
            try #require(alive.int == 0, "alpha-ep1's liveness key outlived its TTL")
            let connection = try await cluster.redis.connect()
            let store = RedisPresenceStore(connection: connection, domain: ProcessCluster.domain)
            let online = try await store.lookup([Self.bob])
            let live = try await store.liveEndpoints(domain: ProcessCluster.domain)
            let count = try await store.onlineCount(domain: ProcessCluster.domain)
            try? await connection.close()
            try #require(online.isEmpty)
            try #require(live == ["alpha-ep2"], "alpha-ep2 keeps heartbeating without a center; alpha-ep1 is dead")
            try #require(count == 0)
            print("Processes: ghost presence expired \(killedAt.duration(to: expiredAt)) after SIGKILL of endpoint and center (TTL \(Self.presenceTTL) s)")
        }
    }

    // MARK: - Messages across a center restart

    /// Bob online on alpha-ep2 the whole time, acknowledging what he gets; alice on alpha-ep1.
    /// Every acknowledged message reaches him once: live, or, for one the restart kept from his
    /// live session (see the known issue below) or whose acknowledgement the outage swallowed,
    /// at his next login; his history holds each once, and a third login finds nothing waiting.
    @Test func aCenterRestartedMidConversationLosesNoAckedMessageAndDuplicatesNoneForAnOnlineRecipient() async throws {
        try await ProcessCluster.run { cluster in
            try await cluster.register("alice")
            try await cluster.register("bob")
            let alice = try await cluster.connect(try await cluster.login("alice"), name: "alice", to: .ep1, options: Self.aliceOptions)
            let bobSession = try await cluster.login("bob")
            let bob = try await cluster.connect(bobSession, name: "bob", to: .ep2)
            let inbox = ProcessTestInbox()
            let receiver = Task { await inbox.receive(on: bob) }

            let conversation = try await Self.converseAcrossCenterRestart(cluster, alice: alice)
            try await alice.quit()

            // Both links are up again and every message acknowledged: what is coming live comes
            // within milliseconds; wait (bounded) for all of it.
            let deadline = ContinuousClock.now + .seconds(5)
            while Set(inbox.deliveries.map(\.clientMessageID)) != Set(conversation.ids), ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
            }
            inbox.stop()
            await receiver.value
            let live = inbox.deliveries
            try await bob.quit()

            // His next login brings what is still queued for him (acknowledged then by him).
            let second = try await cluster.connect(bobSession, name: "bob", to: .ep2)
            let queued = second.initialState.messages
            try await second.ack(queued.map(\.serverMessageID))
            try await second.quit()
            let received = live + queued
            try conversation.requireExactlyOnce(
                received.map { ($0.clientMessageID, $0.serverMessageID, $0.content) }, what: "bob's deliveries", redeliveries: true)
            let history = try MessageHistory(home: cluster.home("bob"), owner: Self.bob).records(withPeer: Self.alice)
            try conversation.requireExactlyOnce(
                history.compactMap(\.delivery).map { ($0.clientMessageID, $0.serverMessageID, $0.content) }, what: "bob's history")

            // Everything acknowledged: a third login finds nothing waiting.
            let third = try await cluster.connect(bobSession, name: "bob", to: .ep2)
            try #require(third.initialState.messages.map(\.clientMessageID) == [], "the center still queues messages bob acknowledged")
            try await third.quit()
            let liveIDs = Set(live.map(\.clientMessageID))
            let late = conversation.ids.filter { !liveIDs.contains($0) }
            let redelivered = received.count - Set(received.map(\.serverMessageID)).count
            print("""
                Processes: online recipient: \(conversation.summary); \(late.count) reached bob only at his next login \(late), \
                \(redelivered) redelivery(ies) with the same server id, \(inbox.errors.count) error event(s) for bob \
                (\(inbox.errors.map { "\($0.code.rawValue)" }.joined(separator: ", ")))
                """)
        }
    }

    /// A message stored while the recipient's endpoint is relinking to a restarted center
    /// reaches the recipient's live session once the endpoint relinks.
    ///
    /// alpha-ep2 (bob's endpoint) is frozen with SIGSTOP while the center is killed and started
    /// again, so that alpha-ep1 relinks first; alice's message is stored and acknowledged while
    /// the center knows no session of bob. When alpha-ep2 relinks, its `LinkHello` binds bob's
    /// session again; the endpoint ignores the initial state of a session it already holds, so
    /// the center sends everything queued as 18.
    @Test func aMessageStoredWhileTheRecipientsEndpointRelinksReachesHisLiveSession() async throws {
        try await ProcessCluster.run { cluster in
            try await cluster.register("alice")
            try await cluster.register("bob")
            let alice = try await cluster.connect(try await cluster.login("alice"), name: "alice", to: .ep1, options: Self.aliceOptions)
            let bobSession = try await cluster.login("bob")
            let bob = try await cluster.connect(bobSession, name: "bob", to: .ep2)
            let inbox = ProcessTestInbox()
            let receiver = Task { await inbox.receive(on: bob) }

            let before = try await alice.send(text: "before the restart", to: Self.bob)
            try await cluster.waitFor("bob's live delivery before the restart", timeout: .seconds(5)) {
                inbox.deliveries.contains { $0.serverMessageID == before.serverMessageID }
            }
            let ep2 = try cluster.process(.ep2)
            ep2.signal(SIGSTOP)
            try await cluster.kill(.center)
            try await cluster.start(.center)
            try await cluster.waitForLog(of: .ep1, containing: "] link up", count: 2, timeout: .seconds(20))
            let stored = try await alice.send(text: "while alpha-ep2 relinks", to: Self.bob)
            ep2.signal(SIGCONT)
            try await cluster.waitForLog(of: .ep2, containing: "] link up", count: 2, timeout: .seconds(20))
            let liveDeadline = ContinuousClock.now + .seconds(5)
            while !inbox.deliveries.contains(where: { $0.serverMessageID == stored.serverMessageID }), ContinuousClock.now < liveDeadline {
                try await Task.sleep(for: .milliseconds(50))
            }
            inbox.stop()
            await receiver.value
            try #require(
                inbox.deliveries.contains { $0.serverMessageID == stored.serverMessageID },
                "bob's live session did not get the message acknowledged to alice while his endpoint was relinking")

            // Acknowledged live, so nothing is queued for his next login.
            try await bob.quit()
            let again = try await cluster.connect(bobSession, name: "bob", to: .ep2)
            try #require(!again.initialState.messages.map(\.serverMessageID).contains(stored.serverMessageID))
            try await again.quit()
            try await alice.quit()
        }
    }

    /// Bob offline while alice sends and the center restarts; then `myim inbox` (the CLI) gets
    /// every acknowledged message once, and a second `myim inbox` gets none.
    @Test func aCenterRestartedMidConversationLosesNoAckedMessageAndDuplicatesNoneForAnOfflineRecipient() async throws {
        try await ProcessCluster.run { cluster in
            try await cluster.register("alice")
            let bobHome = cluster.home("bob").path
            let password = ProcessCluster.password + "\n"
            let common = ["--server", cluster.loginServer, "--pin", try cluster.loginPin.description, "--password-stdin", "--json"]
            let registered = try await cluster.cli(["register", Self.bob] + common, home: bobHome, input: password)
            try #require(registered.status == 0, "myim register: \(registered.output)\(registered.errors)")
            let loggedIn = try await cluster.cli(["login", Self.bob] + common, home: bobHome, input: password)
            try #require(loggedIn.status == 0, "myim login: \(loggedIn.output)\(loggedIn.errors)")

            let alice = try await cluster.connect(try await cluster.login("alice"), name: "alice", to: .ep1, options: Self.aliceOptions)
            let conversation = try await Self.converseAcrossCenterRestart(cluster, alice: alice)
            try await alice.quit()

            let inbox = try await cluster.cli(["inbox", "--json", "--wait", "1"], home: bobHome)
            try #require(inbox.status == 0, "myim inbox: \(inbox.output)\(inbox.errors)")
            let printed = Self.records(in: inbox.output)
            try conversation.requireExactlyOnce(printed.compactMap(\.delivery).map { ($0.clientMessageID, $0.serverMessageID, $0.content) }, what: "myim inbox")
            let history = try MessageHistory(home: cluster.home("bob"), owner: Self.bob).records(withPeer: Self.alice)
            try conversation.requireExactlyOnce(history.compactMap(\.delivery).map { ($0.clientMessageID, $0.serverMessageID, $0.content) }, what: "bob's history")

            let second = try await cluster.cli(["inbox", "--json", "--wait", "0.5"], home: bobHome)
            try #require(second.status == 0, "second myim inbox: \(second.output)\(second.errors)")
            try #require(Self.records(in: second.output).map(\.clientMessageID) == [], "a second inbox got messages again")
            print("Processes: offline recipient: \(conversation.summary)")
        }
    }

    // MARK: - Helpers

    /// A reply that never comes (a chat the killed center took with it) fails after 3 s, not 30.
    static var aliceOptions: MessagingOptions {
        var options = MessagingOptions()
        options.replyTimeout = .seconds(3)
        return options
    }

    static func text(_ index: Int) -> String { "message \(index) from alice" }

    /// The history records (message 18 layout) among `output`'s lines; other lines are skipped.
    static func records(in output: String) -> [HistoryRecord] {
        output.split(whereSeparator: \.isNewline).compactMap { try? JSONDecoder().decode(HistoryRecord.self, from: Data($0.utf8)) }
    }

    /// What alice sent and what the server acknowledged.
    struct Conversation {
        /// Client message ids in sending order.
        var ids: [String]
        var texts: [String: String]
        /// The first 8 alice got for each id.
        var acked: [String: ChatAccepted]
        /// Ids that failed their first send (330 or no answer) and were sent again.
        var resent: [String]
        /// Why the first send of each resent id failed.
        var failures: [String: String]
        var killedAfterAcks: Int
        var downtime: Duration
        var reconnect: Duration

        var summary: String {
            "\(ids.count) messages, center frozen after \(killedAfterAcks) acks then killed, down \(downtime), endpoints relinked \(reconnect) after its restart, "
                + "\(resent.count) resent with the same client id (" + resent.map { "\($0): \(failures[$0] ?? "?")" }.joined(separator: "; ") + ")"
        }

        /// Every id appears exactly once in `seen`, with the server id of its 8 and its text.
        ///
        /// With `redeliveries`, the same message may come again with the same server id (live
        /// deliveries: a message whose acknowledgement the killed center never processed is sent
        /// again, as QoS 1 says); without, each must be there once (what the user is shown).
        func requireExactlyOnce(
            _ seen: [(clientID: String, serverID: Int64, content: ChatContent)], what: String, redeliveries: Bool = false
        ) throws {
            var serverIDs: [String: [Int64]] = [:]
            for item in seen { serverIDs[item.clientID, default: []].append(item.serverID) }
            let missing = ids.filter { serverIDs[$0] == nil }
            try #require(missing.isEmpty, "\(what) lacks acknowledged messages \(missing)")
            let unexpected = Set(serverIDs.keys).subtracting(ids)
            try #require(unexpected.isEmpty, "\(what) has messages alice never sent: \(unexpected.sorted())")
            for id in ids {
                let expected = try #require(acked[id]).serverMessageID
                // The same server id again is a wire redelivery of an unacknowledged message; a
                // second server id would be the message stored twice.
                try #require(Set(serverIDs[id] ?? []) == [expected], "\(what): \(id) came as server ids \(serverIDs[id] ?? []), acknowledged as \(expected)")
            }
            for item in seen {
                try #require(item.content == .text(texts[item.clientID] ?? ""), "\(what): \(item.clientID) has other content: \(item.content)")
            }
            if !redeliveries {
                try #require(seen.count == ids.count, "\(what) shows \(seen.count) messages for \(ids.count) sent: some twice")
            }
        }
    }

    /// Alice sends QoS-1 messages to bob one after the other (20 ms apart). After the 10th
    /// acknowledgement:
    /// - the center is frozen (SIGSTOP) while she sends the 11th, which gets no 8 within her
    ///   3 s timeout, then thawed (SIGCONT): it stores that message, but alice has no ack;
    /// - a second later the center is killed with SIGKILL while she goes on sending, kept down
    ///   2 s, and started again on the same topology and data; the endpoints relink by themselves.
    ///
    /// Then alice resends, with the same client message id, every message she got no 8 for,
    /// until each has one; the 11th must come back with the id it was stored under before the
    /// crash. Last, she resends a few acknowledged ones: the server gives back their ids.
    static func converseAcrossCenterRestart(_ cluster: ProcessCluster, alice: MessagingConnection, count: Int = 30, killAfter: Int = 10) async throws
        -> Conversation
    {
        let ids = (0..<count).map { "alice-\($0)" }
        let texts = Dictionary(uniqueKeysWithValues: ids.enumerated().map { ($1, text($0)) })
        // Longer than the client's one automatic retry after a 330 (1 s), so that sends fail
        // for good while the center is down and have to be resent.
        let downtime = Duration.seconds(2)
        let storedUnacked = ids[killAfter]
        var acked: [String: ChatAccepted] = [:]
        var failed: [String: String] = [:]
        var restart: Task<(killed: ContinuousClock.Instant, restarted: ContinuousClock.Instant), any Error>?
        var lastSendStarted = ContinuousClock.now
        for id in ids {
            if id == storedUnacked {
                // Throwing is fine up to here: no restart is running yet.
                try #require(acked.count == killAfter, "alice got \(acked.count) acknowledgements before the crash, not \(killAfter): \(failed)")
                let center = try cluster.process(.center)
                center.signal(SIGSTOP)
                do {
                    acked[id] = try await alice.send(.text(texts[id]!), to: bob, clientMessageID: id)
                } catch {
                    failed[id] = error.message
                }
                center.signal(SIGCONT)
                try await Task.sleep(for: .seconds(1))
                try #require(acked[id] == nil, "the frozen center answered \(id)")
                // Nothing below throws, so the restart is always awaited before returning.
                restart = Task {
                    let killed = ContinuousClock.now
                    try await cluster.kill(.center)
                    try await Task.sleep(for: downtime)
                    try await cluster.start(.center)
                    return (killed, ContinuousClock.now)
                }
                continue
            }
            lastSendStarted = .now
            do {
                acked[id] = try await alice.send(.text(texts[id]!), to: bob, clientMessageID: id)
            } catch {
                failed[id] = error.message
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
        let restartTask = try #require(restart)
        let (killedAt, restartedAt) = try await restartTask.value
        try #require(killedAt < lastSendStarted, "the center was killed after the last message; nothing was sent across the restart")
        try await cluster.waitForLinks(count: 2, timeout: .seconds(20))
        let reconnect = restartedAt.duration(to: .now)
        // Ids acknowledged at their first send after the unacknowledged one: all stored after it.
        let laterIDs = ids.drop { $0 != storedUnacked }.dropFirst().compactMap { acked[$0]?.serverMessageID }

        // Resend what got no 8, with the same client message id (bounded: 5 rounds).
        var resent: [String] = []
        let firstFailures = failed
        for _ in 1...5 where acked.count < count {
            for id in ids where acked[id] == nil {
                do {
                    acked[id] = try await alice.send(.text(texts[id]!), to: bob, clientMessageID: id)
                    resent.append(id)
                } catch {
                    failed[id] = error.message
                }
            }
            if acked.count < count { try await Task.sleep(for: .seconds(1)) }
        }
        let unacked = ids.filter { acked[$0] == nil }
        try #require(unacked.isEmpty, "no 8 after 5 rounds of resending for \(unacked.map { "\($0): \(failed[$0] ?? "?")" })")
        try #require(resent.count >= 2, "fewer sends than expected failed across the freeze and the restart: \(firstFailures)")

        // The message stored before the crash but never acknowledged came back with its old id,
        // lower than those of the messages sent after it, instead of being stored again.
        let storedID = try #require(acked[storedUnacked]).serverMessageID
        let firstLater = try #require(laterIDs.min(), "no message sent after \(storedUnacked) was acknowledged at its first send")
        try #require(storedID < firstLater, """
            resending \(storedUnacked), stored before the crash, got server id \(storedID), above the \(firstLater) of a message \
            sent after it: it was stored a second time
            """)

        // Resending acknowledged messages (before the crash, the first after it, the last) with
        // their client ids stores nothing new: the server answers with the same ids.
        for id in Set([ids[0], ids[killAfter - 1], ids[killAfter + 1], ids[count - 1]] + resent) {
            let again = try await alice.send(.text(texts[id]!), to: bob, clientMessageID: id)
            try #require(
                again.serverMessageID == acked[id]?.serverMessageID,
                "resending \(id) got server id \(again.serverMessageID), not \(acked[id]?.serverMessageID ?? 0)")
        }
        return Conversation(
            ids: ids, texts: texts, acked: acked, resent: resent, failures: firstFailures, killedAfterAcks: killAfter, downtime: downtime,
            reconnect: reconnect)
    }
}

/// Bob's side of a conversation: every event read, QoS-1 deliveries acknowledged at once.
/// A receiver that follows its session across endpoints: acknowledges what it receives,
/// reconnects on 48, and keeps per client id the server ids it saw.
final class ProcessTestFollowingInbox: Sendable {
    private let state = Mutex<(current: MessagingConnection?, byClientID: [String: Set<Int64>], shown: [String], seen: Set<Int64>,
                               endpoints: [String], reconnects: Int, redeliveries: Int, stopped: Bool)>((nil, [:], [], [], [], 0, 0, false))

    var connection: MessagingConnection { state.withLock { $0.current! } }
    var clientIDs: Set<String> { state.withLock { Set($0.byClientID.keys) } }
    var shownClientIDs: [String] { state.withLock { $0.shown } }
    var endpoints: [String] { state.withLock { $0.endpoints } }
    var reconnects: Int { state.withLock { $0.reconnects } }
    var redeliveries: Int { state.withLock { $0.redeliveries } }
    func serverIDs(of clientID: String) -> Set<Int64> { state.withLock { $0.byClientID[clientID] ?? [] } }
    func stop() { state.withLock { $0.stopped = true } }

    func receive(starting connection: MessagingConnection) async {
        var connection = connection
        state.withLock { $0.current = connection; $0.endpoints.append(connection.endpoint.name ?? "?") }
        await take(connection.initialState.messages, on: connection)
        while !state.withLock({ $0.stopped }) {
            guard let event = await connection.next(timeout: .milliseconds(100)) else {
                if await connection.closedReason != nil { return }
                continue
            }
            switch event {
            case .delivery(let delivery):
                await take([delivery], on: connection)
            case .reconnect(let notice):
                guard let next = try? await connection.reconnect(after: notice) else { return }
                connection = next
                state.withLock { $0.current = next; $0.endpoints.append(next.endpoint.name ?? "?"); $0.reconnects += 1 }
                await take(next.initialState.messages, on: next)
            default:
                break
            }
        }
    }

    private func take(_ deliveries: [ChatDelivery], on connection: MessagingConnection) async {
        for delivery in deliveries where delivery.senderName != ProcessesTests.bob {
            state.withLock { state in
                state.byClientID[delivery.clientMessageID, default: []].insert(delivery.serverMessageID)
                if state.seen.insert(delivery.serverMessageID).inserted {
                    state.shown.append(delivery.clientMessageID)
                } else {
                    state.redeliveries += 1
                }
            }
        }
        try? await connection.acknowledge(deliveries)
    }
}

final class ProcessTestInbox: Sendable {
    private struct State {
        var deliveries: [ChatDelivery] = []
        var errors: [ClientError] = []
        var stopped = false
    }

    private let state = Mutex(State())

    var deliveries: [ChatDelivery] { state.withLock { $0.deliveries } }
    var errors: [ClientError] { state.withLock { $0.errors } }

    func stop() { state.withLock { $0.stopped = true } }

    /// Reads `connection` until ``stop()`` or until it closes.
    func receive(on connection: MessagingConnection) async {
        while !state.withLock({ $0.stopped }) {
            guard let event = await connection.next(timeout: .milliseconds(200)) else {
                if await connection.closedReason != nil { return }
                continue
            }
            switch event {
            case .delivery(let delivery):
                state.withLock { $0.deliveries.append(delivery) }
                if delivery.qos == .atLeastOnce { try? await connection.ack([delivery.serverMessageID]) }
            case .error(let error):
                state.withLock { $0.errors.append(error) }
            default:
                break
            }
        }
    }
}
