@testable import MyIMEndpoint
import MyIMLink
import MyIMWire
import NIOCore
import NIOEmbedded
import NIOPosix
import Testing

extension EndpointTests {
    /// The pure parts: routing client packets and the reconnect backoff.
    @Suite struct Units {
        /// Through NIO's own pool, as a channel reads: the kept buffer stays small after a burst
        /// of large reads, and each read gets room for what the last ones needed.
        @Test func receiveBuffersStaySmallForIdleConnections() {
            var pool = NIOPooledRecvBufferAllocator(capacity: 1, recvAllocator: IdleFriendlyRecvAllocator(pooled: 128, maximum: 1024))
            let allocator = ByteBufferAllocator()
            /// One read of `arriving` bytes (as much as fits); the capacity read into.
            func read(_ arriving: Int) -> Int {
                let (buffer, count) = pool.buffer(allocator: allocator) { buffer in
                    let count = min(arriving, buffer.writableBytes)
                    buffer.writeRepeatingByte(7, count: count)
                    return count
                }
                pool.record(actualReadBytes: count)
                return buffer.capacity
            }
            #expect(read(65) == 128)  // A ping: the first buffer, kept.
            #expect(read(128) == 128)  // Full: the next is larger.
            #expect(read(4000) == 256)
            #expect(read(4000) == 512)
            #expect(read(4000) == 1024)
            #expect(read(4000) == 1024)  // At the maximum.
            #expect(read(600) == 1024)  // Over half: stays.
            #expect(read(100) == 1024)  // Half or less: halves.
            #expect(read(100) == 512)
            #expect(read(100) == 256)
            #expect(read(65) == 128)  // Back to the kept buffer, not grown by the burst.
            #expect(read(65) == 128)
            #expect(pool.count == 1)
        }

        /// The listener's connection list: a member leaving takes the last one into its slot,
        /// leaving twice changes nothing, and a shutdown reaches each member held.
        @Test func connectionsAreHeldPerLoopAndShutDownTogether() async throws {
            final class Member: ClientConnections.Member {
                var slot = -1
                var shutDowns = 0
                func shutDown() { shutDowns += 1 }
            }
            let group = MultiThreadedEventLoopGroup.singleton
            let loop = group.next()
            let connections = ClientConnections(group: group)
            let members = try await loop.submit { NIOLoopBound((Member(), Member(), Member()), eventLoop: loop) }.get()
            try await loop.submit {
                let (a, b, c) = members.value
                for member in [a, b, c] { connections.add(member, on: loop) }
                #expect([a.slot, b.slot, c.slot] == [0, 1, 2])
                connections.remove(a, on: loop)
                #expect(c.slot == 0 && b.slot == 1)
                connections.remove(a, on: loop)
            }.get()
            #expect(await connections.count() == 2)
            await connections.shutDownAll()
            try await loop.submit {
                let (a, b, c) = members.value
                #expect([a.shutDowns, b.shutDowns, c.shutDowns] == [0, 1, 1])
                connections.remove(b, on: loop)
                connections.remove(c, on: loop)
            }.get()
            #expect(await connections.count() == 0)
        }

        @Test func clientPacketRoutes() {
            #expect(ClientPacketRoute(type: MessageType.ping.rawValue) == .ping)
            #expect(ClientPacketRoute(type: MessageType.pong.rawValue) == .ignore)
            for type in [1, 2, 3, 4, 5, 6, 7, 23, 24, 25, 27, 29, 30, 32, 35, 36, 37, 39, 43, 45, 46] as [UInt32] {
                #expect(ClientPacketRoute(type: type) == .relay, "type \(type)")
            }
            for type in [8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 26, 28, 31, 33, 34, 38, 40, 41, 42, 44, 47, 48] as [UInt32] {
                guard case .refuse(let code, _) = ClientPacketRoute(type: type) else {
                    Issue.record("type \(type) should be refused")
                    continue
                }
                #expect(code == .notSupportedHere, "type \(type)")
            }
            for type in [0, 49, 1001, 1006, 2001, 2006, 2011, 9999, UInt32.max] as [UInt32] {
                guard case .refuse(let code, _) = ClientPacketRoute(type: type) else {
                    Issue.record("type \(type) should be refused")
                    continue
                }
                #expect(code == .unknownMessageType, "type \(type)")
            }
        }

        /// Every held user is in exactly one heartbeat slice, about `size` to a slice, and in the
        /// same slice each round while the count stays; with nobody held there is one empty
        /// slice (the call that says the endpoint is alive).
        @Test func heartbeatSlicesCoverEveryUserOnceAndKeepThemInPlace() {
            #expect(Endpoint.heartbeatSlices(of: [], about: 100) == [[]])
            let users = (0..<7_500).map { "idle\($0)@alpha.example" }
            let slices = Endpoint.heartbeatSlices(of: users, about: 100)
            #expect(slices.count == 75)
            #expect(slices.flatMap { $0 }.sorted() == users.sorted())
            // Hash buckets are not even, but none is far from 100.
            #expect(slices.allSatisfy { (40...180).contains($0.count) }, "\(slices.map(\.count))")
            // Another round, the users listed in another order: each stays in its slice.
            let again = Endpoint.heartbeatSlices(of: users.reversed(), about: 100)
            #expect(again.map { Set($0) } == slices.map { Set($0) })
            #expect(Endpoint.heartbeatSlices(of: Array(users.prefix(3)), about: 100).map(\.count) == [3])
            // More users, so one more slice: each user's place in the round moves by less than
            // one slice, so its refreshes stay about an interval apart.
            let more = users + (0..<100).map { "late\($0)@alpha.example" }
            let grown = Endpoint.heartbeatSlices(of: more, about: 100)
            #expect(grown.count == 76)
            var placeBefore: [String: Double] = [:]
            for (index, slice) in slices.enumerated() { for user in slice { placeBefore[user] = Double(index) / 75 } }
            let moved = grown.enumerated().flatMap { index, slice in
                slice.filter { user in placeBefore[user].map { abs(Double(index) / 76 - $0) >= 1.0 / 75 } ?? false }
            }
            #expect(moved.isEmpty, "\(moved.count) users moved by a slice or more, e.g. \(moved.prefix(3))")
            // A user with two sessions here is refreshed once.
            let twice = Endpoint.heartbeatSlices(of: ["a@alpha.example", "b@alpha.example", "a@alpha.example"], about: 1)
            #expect(twice.flatMap { $0 }.sorted() == ["a@alpha.example", "b@alpha.example"])
        }

        @Test func backoffDoublesFrom100msTo5sWithJitter() {
            var backoff = ReconnectBackoff()
            let ceilings: [Duration] = (0..<10).map { _ in
                defer { _ = backoff.next(unit: 1) }
                return backoff.ceiling
            }
            #expect(ceilings == [.milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(800), .milliseconds(1600),
                                 .milliseconds(3200), .seconds(5), .seconds(5), .seconds(5), .seconds(5)])
            #expect(backoff.next(unit: 0) == .milliseconds(2500))
            #expect(backoff.next(unit: 0.5) == .milliseconds(3750))
            backoff.reset()
            #expect(backoff.next(unit: 1) == .milliseconds(100))
            #expect(backoff.next(unit: 0) == .milliseconds(100))
        }
    }
}

/// The endpoint's writer to its center link.
@Suite struct LinkWriterTests {
    /// A link that closed but is not detached yet is down: the client gets 20 with 330, the
    /// request is not written to a closed channel and lost unseen.
    @Test func aClosedLinkIsDownBeforeItIsDetached() throws {
        let channel = EmbeddedChannel()
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        let writer = LinkWriter()
        #expect(writer.send(Ping(time: 1).packet) == .down)
        writer.attach(channel)
        #expect(writer.send(Ping(time: 2).packet) == .sent)
        try channel.close().wait()
        #expect(writer.send(Ping(time: 3).packet) == .down)
        writer.detach()
        #expect(writer.send(Ping(time: 4).packet) == .down)
    }
}
