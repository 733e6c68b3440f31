import Crypto
import MyIMSecureChannel
import MyIMWire
import NIOCore
import Testing

@Suite("Handshake: client and server state machines")
struct HandshakeTests {
    @Test("both sides reach .established and agree on the session", arguments: IdentityKind.allCases)
    func handshakeCompletes(kind: IdentityKind) throws {
        let run = try Handshake(identity: kind.key)
        #expect(run.client.isEstablished)
        #expect(run.server.isEstablished)
        #expect(run.clientSession.serverKey == kind.key.publicKey)
        #expect(run.serverSession.serverKey == kind.key.publicKey)
        #expect(run.clientSession.transcriptHash.count == 32)
        #expect(run.clientSession.transcriptHash == run.serverSession.transcriptHash)
        #expect(run.clientSession.serverKeyFirstSeen == false)

        // The transcript hash is SHA-256 of ClientHello and ServerHello, as sent.
        let serverHello = try #require(try run.serverFlight.plainPackets().first)
        var transcript = SHA256()
        transcript.update(data: run.clientHello.readableBytesView)
        transcript.update(data: serverHello.readableBytesView)
        #expect(Array(transcript.finalize()) == run.clientSession.transcriptHash)

        // What travels in clear is what the protocol says.
        let flight = try run.serverFlight.plainPackets()
        #expect(flight.count == 2)
        let hello = try ServerHello(packet: try Packet(decoding: flight[0]))
        #expect(hello.keyType == kind.key.publicKey.type.rawValue)
        #expect(hello.identityKey == kind.key.publicKey.spki)
        _ = try ServerVerify(packet: try Packet(decoding: flight[1]))
    }

    /// A client's early packets (a token) go out with ClientFinished, in the same write, as
    /// c2s frames 1, 2, …; the server delivers them right after it is established, and the
    /// channel goes on from there (the next frame is 3, HelloDone still confirms the keys).
    @Test("early packets go with ClientFinished and are delivered once the server is established", arguments: IdentityKind.allCases)
    func earlyPacketsGoWithClientFinished(kind: IdentityKind) throws {
        let early = Array(samplePackets(from: "client").prefix(2))
        var client = ClientChannelStateMachine(policy: .pinned(kind.key.publicKey.fingerprint), earlyPackets: early)
        var server = ServerChannelStateMachine(identity: kind.key)
        let hello = server.feed(client.start().written)
        let finished = client.feed(hello.written)
        try #require(finished.kinds == [.write], "\(finished.closeError?.description ?? "")")

        // One write: the server's single read of it yields the handshake's end, then the packets.
        let atServer = server.feed(finished.written)
        #expect(atServer.kinds == [.write, .established] + Array(repeating: .deliver, count: early.count))
        #expect(atServer.delivered == early)
        #expect(client.isEstablished == false, "established before HelloDone verified")

        let established = client.feed(atServer.written)
        #expect(established.kinds == [.established])
        var next = ByteBuffer()
        let later = Packet(type: 7, body: ["after": .string("the early ones")])
        try client.seal(later, into: &next)
        #expect(server.feed(next).delivered == [later], "the client's counter went on past the early packets")
    }

    /// Early packets are sealed with keys only the pinned server can hold: a client whose
    /// policy refuses the server's key writes nothing, and a server that cannot verify the
    /// ClientFinished they came with (other keys) establishes nothing and delivers none of them.
    @Test("early packets never reach a refused or unverified peer")
    func earlyPacketsNeverReachARefusedOrUnverifiedPeer() throws {
        let early = [Packet(type: 41, body: ["token": .string("secret")])]
        let key = IdentityKind.ed25519.key

        var refusing = ClientChannelStateMachine(policy: .pinned(IdentityKind.rsa.key.publicKey.fingerprint), earlyPackets: early)
        var server = ServerChannelStateMachine(identity: key)
        let refused = refusing.feed(server.feed(refusing.start().written).written)
        #expect(refused.kinds.count == 1 && refused.kinds.allSatisfy(\.isClose), "a refused server key: nothing is written")

        var client = ClientChannelStateMachine(policy: .pinned(key.publicKey.fingerprint), earlyPackets: early)
        var first = ServerChannelStateMachine(identity: key)
        let finished = client.feed(first.feed(client.start().written).written)
        try #require(finished.kinds == [.write])
        var other = ServerChannelStateMachine(identity: key)
        var stranger = ClientChannelStateMachine(policy: .pinned(key.publicKey.fingerprint))
        _ = stranger.feed(other.feed(stranger.start().written).written)
        let atOther = other.feed(finished.written)
        #expect(atOther.delivered.isEmpty)
        #expect(!atOther.kinds.contains(.established))
        #expect(atOther.kinds.last?.isClose == true)
    }

    @Test("two handshakes never share a transcript", arguments: IdentityKind.allCases)
    func transcriptsDiffer(kind: IdentityKind) throws {
        let first = try Handshake(identity: kind.key)
        let second = try Handshake(identity: kind.key)
        #expect(first.clientSession.transcriptHash != second.clientSession.transcriptHash)
    }

    @Test("packets are delivered in both directions, several in a row", arguments: IdentityKind.allCases)
    func packetsFlowBothWays(kind: IdentityKind) throws {
        var run = try Handshake(identity: kind.key)
        let fromClient = samplePackets(from: "client")
        let fromServer = samplePackets(from: "server")

        // Several frames in one read.
        let toServer = try run.client.sealAll(fromClient)
        let atServer = run.server.feed(toServer)
        #expect(atServer.kinds == Array(repeating: .deliver, count: fromClient.count))
        #expect(atServer.delivered == fromClient)

        let toClient = try run.server.sealAll(fromServer)
        let atClient = run.client.feed(toClient)
        #expect(atClient.kinds == Array(repeating: .deliver, count: fromServer.count))
        #expect(atClient.delivered == fromServer)

        // And one frame per read, alternating directions; the counters keep going.
        for round in 0..<5 {
            let ping = Ping(time: Int64(round)).packet
            var out = ByteBuffer()
            try run.client.seal(ping, into: &out)
            #expect(run.server.feed(out).delivered == [ping])
            let pong = Pong(time: Int64(round)).packet
            out.clear()
            try run.server.seal(pong, into: &out)
            #expect(run.client.feed(out).delivered == [pong])
        }
    }

    @Test("drip-feeding the server's bytes one at a time gives the same result", arguments: IdentityKind.allCases)
    func dripFedHandshake(kind: IdentityKind) throws {
        let clientEphemeral = Curve25519.KeyAgreement.PrivateKey()
        let serverEphemeral = Curve25519.KeyAgreement.PrivateKey()
        let clientRandom = randomBytes(32)
        let serverRandom = randomBytes(32)
        let whole = try Handshake(
            identity: kind.key, clientEphemeral: clientEphemeral, serverEphemeral: serverEphemeral,
            clientRandom: clientRandom, serverRandom: serverRandom)
        var dripped = try Handshake(
            identity: kind.key, clientEphemeral: clientEphemeral, serverEphemeral: serverEphemeral,
            clientRandom: clientRandom, serverRandom: serverRandom, dripFeed: true)

        // Same inputs, same keys: the client's ClientFinished is byte-identical (the
        // transcript does not include the signature, so even randomized RSA-PSS agrees).
        #expect(dripped.clientFinished.bytes == whole.clientFinished.bytes)
        #expect(dripped.clientSession == whole.clientSession)
        #expect(dripped.client.isEstablished)

        // Application frames drip-fed both ways arrive whole and in order.
        let fromServer = samplePackets(from: "server")
        let atClient = dripped.client.dripFeed(try dripped.server.sealAll(fromServer))
        #expect(atClient.leftover == 0)
        #expect(atClient.actions.kinds == Array(repeating: .deliver, count: fromServer.count))
        #expect(atClient.actions.delivered == fromServer)

        let fromClient = samplePackets(from: "client")
        let atServer = dripped.server.dripFeed(try dripped.client.sealAll(fromClient))
        #expect(atServer.leftover == 0)
        #expect(atServer.actions.delivered == fromClient)
    }

    @Test("drip-feeding the client's bytes one at a time to the server completes the handshake")
    func dripFedServer() throws {
        var client = ClientChannelStateMachine(policy: .pinned(TestKeys.ed25519.publicKey.fingerprint))
        var server = ServerChannelStateMachine(identity: TestKeys.ed25519)
        let hello = server.dripFeed(client.start().written)
        #expect(hello.actions.kinds == [.write])
        let finished = client.feed(hello.actions.written)
        let done = server.dripFeed(finished.written)
        #expect(done.actions.kinds == [.write, .established])
        #expect(done.leftover == 0)
        #expect(client.feed(done.actions.written).kinds == [.established])
    }

    @Test("application frames coalesced with the last handshake frame are delivered at once")
    func coalescedWithHandshake() throws {
        var client = ClientChannelStateMachine(policy: .pinned(TestKeys.ed25519.publicKey.fingerprint))
        var server = ServerChannelStateMachine(identity: TestKeys.ed25519)
        let flight = server.feed(client.start().written).written

        let atServer = server.feed(client.feed(flight).written)
        #expect(atServer.kinds == [.write, .established])

        // HelloDone and the server's first packets arrive in one read.
        var toClient = atServer.written
        let greetings = [Ping(time: 7).packet, Pong(time: 8).packet]
        for packet in greetings { try server.seal(packet, into: &toClient) }
        let atClient = client.feed(toClient)
        #expect(atClient.kinds == [.established, .deliver, .deliver])
        #expect(atClient.delivered == greetings)
    }

    @Test("sealing before the channel is established fails with notEstablished (211)")
    func sealBeforeEstablished() throws {
        var client = ClientChannelStateMachine(policy: .trustOnFirstUse(recorded: nil))
        var server = ServerChannelStateMachine(identity: TestKeys.ed25519)
        var out = ByteBuffer()
        let clientError = #expect(throws: SecureChannelError.self) { try client.seal(Ping().packet, into: &out) }
        #expect(clientError?.code == .notEstablished)
        _ = server.feed(client.start().written)
        let serverError = #expect(throws: SecureChannelError.self) { try server.seal(Ping().packet, into: &out) }
        #expect(serverError?.code == .notEstablished)
        #expect(out.readableBytes == 0)
    }

    @Test("start() sends one ClientHello and only once")
    func startOnce() throws {
        var client = ClientChannelStateMachine(policy: .trustOnFirstUse(recorded: nil))
        let first = client.start()
        #expect(first.kinds == [.write])
        let hello = try ClientHello(packet: try Packet(decoding: first.written))
        #expect(hello.version == 1)
        #expect(hello.random.count == 32)
        #expect(hello.keyShare.count == 32)
        #expect(client.start().isEmpty)
    }

    @Test("random bytes: the length asked for, and every byte value drawn")
    func randomBytesCoverEveryValue() {
        for count in [0, 1, 7, 8, 9, 32, 33] { #expect(randomBytes(count).count == count) }
        #expect(randomBytes(32) != randomBytes(32))
        // In 8,192 uniform bytes a given value is missing with probability e^-32: a generator
        // that repeats or zero-fills part of each draw leaves values out.
        #expect(Set(randomBytes(8192)).count == 256)
        let tail = (0..<64).flatMap { _ in randomBytes(9).suffix(1) }
        #expect(Set(tail).count > 32, "the last byte of an odd length is random too")
    }
}

@Suite("Server key policy: pinning and trust on first use")
struct ServerKeyPolicyTests {
    @Test("TOFU with nothing recorded accepts the key and reports it as first seen", arguments: IdentityKind.allCases)
    func firstUse(kind: IdentityKind) throws {
        let run = try Handshake(identity: kind.key, policy: .trustOnFirstUse(recorded: nil))
        #expect(run.clientSession.serverKeyFirstSeen == true)
        #expect(run.clientSession.serverKey.fingerprint == kind.key.publicKey.fingerprint)
        #expect(run.client.isEstablished)
    }

    @Test("TOFU with the same key recorded accepts it, not as first seen", arguments: IdentityKind.allCases)
    func recordedMatches(kind: IdentityKind) throws {
        let run = try Handshake(identity: kind.key, policy: .trustOnFirstUse(recorded: kind.key.publicKey.fingerprint))
        #expect(run.clientSession.serverKeyFirstSeen == false)
        #expect(run.client.isEstablished)
    }

    @Test("a pinned key that matches is accepted, not as first seen", arguments: IdentityKind.allCases)
    func pinnedMatches(kind: IdentityKind) throws {
        let run = try Handshake(identity: kind.key, policy: .pinned(kind.key.publicKey.fingerprint))
        #expect(run.clientSession.serverKeyFirstSeen == false)
    }

    @Test("the fingerprint is SHA-256 of the SPKI and round-trips through its text form", arguments: IdentityKind.allCases)
    func fingerprint(kind: IdentityKind) throws {
        let key = kind.key.publicKey
        #expect(key.fingerprint.digest == Array(SHA256.hash(data: key.spki)))
        let text = key.fingerprint.description
        #expect(text == "sha256:" + key.fingerprint.digest.hexString)
        #expect(KeyFingerprint(text) == key.fingerprint)
        #expect(KeyFingerprint("sha256:" + text.dropFirst(7).uppercased()) == key.fingerprint)
        #expect(KeyFingerprint(String(text.dropLast())) == nil)
        #expect(KeyFingerprint("md5:" + text.dropFirst(7)) == nil)
    }
}
