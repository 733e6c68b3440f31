import Crypto
import MyIMSecureChannel
import MyIMWire
import NIOCore
import Testing

/// A handshake stopped after the server's first flight, with everything a test needs to
/// tamper with what comes next.
private struct Opening {
    var client: ClientChannelStateMachine
    var server: ServerChannelStateMachine
    let clientEphemeral: Curve25519.KeyAgreement.PrivateKey
    let serverEphemeral: Curve25519.KeyAgreement.PrivateKey
    let clientRandom: [UInt8]
    let serverRandom: [UInt8]
    let clientHello: ByteBuffer
    /// ServerHello followed by ServerVerify.
    let serverFlight: ByteBuffer

    init(identity: ServerIdentityKey, policy: ServerKeyPolicy? = nil) throws {
        clientEphemeral = .init()
        serverEphemeral = .init()
        clientRandom = Array(repeating: 0xc1, count: 32)
        serverRandom = Array(repeating: 0x5e, count: 32)
        client = ClientChannelStateMachine(
            policy: policy ?? .pinned(identity.publicKey.fingerprint), ephemeralKey: clientEphemeral, random: clientRandom)
        server = ServerChannelStateMachine(identity: identity, ephemeralKey: serverEphemeral, random: serverRandom)
        clientHello = client.start().written
        let hello = server.feed(clientHello)
        try #require(hello.kinds == [.write])
        serverFlight = hello.written
    }

    /// The key schedule both sides derive (computed here from the injected keys).
    func schedule() throws -> KeySchedule {
        let serverHello = try #require(try serverFlight.plainPackets().first)
        let shared = try clientEphemeral.sharedSecretFromKeyAgreement(with: serverEphemeral.publicKey)
        var transcript = SHA256()
        transcript.update(data: clientHello.readableBytesView)
        transcript.update(data: serverHello.readableBytesView)
        return KeySchedule(sharedSecret: shared.withUnsafeBytes { Array($0) }, transcriptHash: Array(transcript.finalize()))
    }
}

/// A server flight written by hand and signed with `signer`: for ServerHellos no honest
/// server would send.
private func forgedFlight(clientHello: ByteBuffer, hello: ServerHello, signer: Curve25519.Signing.PrivateKey) throws -> ByteBuffer {
    var flight = ByteBuffer()
    flight.writePacket(hello.packet)
    var transcript = SHA256()
    transcript.update(data: clientHello.readableBytesView)
    transcript.update(data: flight.readableBytesView)
    let signature = try signer.signature(for: HandshakeConstants.signatureContext + Array(transcript.finalize()))
    flight.writePacket(ServerVerify(signature: Array(signature)).packet)
    return flight
}

/// Checks that a server refused with exactly one HelloError in clear carrying `code`, then
/// closed with the same code; returns the HelloError's bytes.
@discardableResult
private func expectRefusal(_ actions: [SecureChannelAction], _ code: ErrorCode, sourceLocation: SourceLocation = #_sourceLocation) throws -> ByteBuffer {
    try #require(actions.kinds == [.write, .close(code)], sourceLocation: sourceLocation)
    let refusal = try HelloError(packet: try Packet(decoding: actions.written))
    #expect(refusal.code == Int64(code.rawValue), sourceLocation: sourceLocation)
    #expect(!refusal.message.isEmpty, sourceLocation: sourceLocation)
    return actions.written
}

/// Checks that a closed machine ignores any further input and refuses to seal.
private func expectInert<M: ChannelStateMachine>(_ machine: inout M, after input: ByteBuffer, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(machine.feed(input).isEmpty, sourceLocation: sourceLocation)
    #expect(!machine.isEstablished, sourceLocation: sourceLocation)
    var out = ByteBuffer()
    let error = #expect(throws: SecureChannelError.self, sourceLocation: sourceLocation) { try machine.seal(Ping().packet, into: &out) }
    #expect(error?.code == .notEstablished, sourceLocation: sourceLocation)
}

@Suite("Handshake failures: each closes with its own error code")
struct HandshakeFailureTests {
    // MARK: Server key policy

    @Test("a key other than the pinned one: serverKeyMismatch (203)", arguments: IdentityKind.allCases)
    func wrongPinnedKey(kind: IdentityKind) throws {
        var opening = try Opening(identity: kind.key, policy: .pinned(TestKeys.otherEd25519.publicKey.fingerprint))
        let actions = opening.client.feed(opening.serverFlight)
        #expect(actions.kinds == [.close(.serverKeyMismatch)])
        let message = try #require(actions.closeError?.message)
        #expect(message.contains(kind.key.publicKey.fingerprint.description))
        #expect(message.contains(TestKeys.otherEd25519.publicKey.fingerprint.description))
        expectInert(&opening.client, after: opening.serverFlight)
    }

    @Test("TOFU with a different key recorded: serverKeyChanged (204)", arguments: IdentityKind.allCases)
    func recordedKeyChanged(kind: IdentityKind) throws {
        var opening = try Opening(identity: kind.key, policy: .trustOnFirstUse(recorded: TestKeys.otherEd25519.publicKey.fingerprint))
        let actions = opening.client.feed(opening.serverFlight)
        #expect(actions.kinds == [.close(.serverKeyChanged)])
        expectInert(&opening.client, after: opening.serverFlight)
    }

    // MARK: Transcript signature

    @Test("a flipped bit in ServerVerify's signature: badSignature (202)", arguments: IdentityKind.allCases)
    func tamperedSignature(kind: IdentityKind) throws {
        var opening = try Opening(identity: kind.key)
        // ServerVerify comes last and its signature is its last value: flip the last byte.
        let tampered = opening.serverFlight.flippingBit(0, atOffset: opening.serverFlight.readableBytes - 1)
        let original = try ServerVerify(packet: try Packet(decoding: try opening.serverFlight.plainPackets()[1]))
        let altered = try ServerVerify(packet: try Packet(decoding: try tampered.plainPackets()[1]))
        #expect(altered.signature.count == original.signature.count)
        #expect(altered.signature.dropLast() == original.signature.dropLast())
        #expect(altered.signature.last != original.signature.last)

        let actions = opening.client.feed(tampered)
        #expect(actions.kinds == [.close(.badSignature)])
        expectInert(&opening.client, after: opening.serverFlight)
    }

    @Test("a flipped bit in ServerHello's random changes the transcript: badSignature (202)", arguments: IdentityKind.allCases)
    func tamperedServerRandom(kind: IdentityKind) throws {
        var opening = try Opening(identity: kind.key)
        let at = try #require(offset(of: opening.serverRandom, in: opening.serverFlight.bytes))
        let actions = opening.client.feed(opening.serverFlight.flippingBit(7, atOffset: at + 10))
        #expect(actions.kinds == [.close(.badSignature)])
    }

    @Test("a flipped bit in ClientHello's random on the way to the server: badSignature (202) at the client", arguments: IdentityKind.allCases)
    func tamperedClientRandom(kind: IdentityKind) throws {
        var client = ClientChannelStateMachine(policy: .pinned(kind.key.publicKey.fingerprint), random: Array(repeating: 0xc1, count: 32))
        var server = ServerChannelStateMachine(identity: kind.key)
        let hello = client.start().written
        let at = try #require(offset(of: Array(repeating: 0xc1, count: 32), in: hello.bytes))
        let flight = server.feed(hello.flippingBit(0, atOffset: at))
        #expect(flight.kinds == [.write])
        #expect(client.feed(flight.written).kinds == [.close(.badSignature)])
    }

    @Test("a ServerVerify signed by another key than ServerHello's: badSignature (202)")
    func signatureByAnotherKey() throws {
        var opening = try Opening(identity: TestKeys.ed25519)
        let serverHello = try opening.serverFlight.plainPackets()[0]
        var transcript = SHA256()
        transcript.update(data: opening.clientHello.readableBytesView)
        transcript.update(data: serverHello.readableBytesView)
        let impostor = Curve25519.Signing.PrivateKey()
        var flight = serverHello
        flight.writePacket(ServerVerify(signature: Array(try impostor.signature(for: HandshakeConstants.signatureContext + Array(transcript.finalize())))).packet)
        #expect(opening.client.feed(flight).kinds == [.close(.badSignature)])
    }

    // MARK: ClientFinished

    @Test("a ClientFinished frame that fails authentication: HelloError 206 in clear, and the client reports 206")
    func undecryptableClientFinished() throws {
        var opening = try Opening(identity: TestKeys.ed25519)
        let finished = opening.client.feed(opening.serverFlight)
        try #require(finished.kinds == [.write])
        let frame = finished.written
        let tampered = frame.flippingBit(2, atOffset: FrameProtection.overhead + 3)

        let refusal = try expectRefusal(opening.server.feed(tampered), .decryptionFailed)
        // Drip-fed, the clear HelloError is still told apart from a frame.
        var dripped = opening.client
        let drip = dripped.dripFeed(refusal)
        #expect(drip.actions.kinds == [.close(.decryptionFailed)])
        #expect(drip.leftover == 0)
        let atClient = opening.client.feed(refusal)
        #expect(atClient.kinds == [.close(.decryptionFailed)])
        #expect(atClient.closeError?.message.contains("refused") == true)
        expectInert(&opening.server, after: frame)
        expectInert(&opening.client, after: refusal)
    }

    @Test("a ClientFinished with a wrong verify value: HelloError 209, and the client reports 209")
    func wrongClientFinishedVerify() throws {
        var opening = try Opening(identity: TestKeys.ed25519)
        let finished = opening.client.feed(opening.serverFlight)
        try #require(finished.kinds == [.write])

        // A well-formed frame under the right keys, carrying the wrong HMAC.
        let schedule = try opening.schedule()
        var sealer = FrameSealer(keys: schedule.clientToServer)
        var forged = ByteBuffer()
        var verify = schedule.clientVerifyData
        verify[0] ^= 1
        try sealer.seal(ClientFinished(verify: verify).packet, into: &forged)

        let refusal = try expectRefusal(opening.server.feed(forged), .finishedMismatch)
        let atClient = opening.client.feed(refusal)
        #expect(atClient.kinds == [.close(.finishedMismatch)])
        expectInert(&opening.server, after: finished.written)
    }

    @Test("the client's correct ClientFinished, recomputed from the injected keys, is accepted")
    func recomputedClientFinished() throws {
        var opening = try Opening(identity: TestKeys.ed25519)
        let finished = opening.client.feed(opening.serverFlight).written
        let schedule = try opening.schedule()
        var sealer = FrameSealer(keys: schedule.clientToServer)
        var expected = ByteBuffer()
        try sealer.seal(ClientFinished(verify: schedule.clientVerifyData).packet, into: &expected)
        #expect(finished.bytes == expected.bytes)
        #expect(opening.server.feed(expected).kinds == [.write, .established])
    }

    @Test("a first frame that is not ClientFinished: HelloError 201")
    func firstFrameNotFinished() throws {
        var opening = try Opening(identity: TestKeys.ed25519)
        let schedule = try opening.schedule()
        var sealer = FrameSealer(keys: schedule.clientToServer)
        var frame = ByteBuffer()
        try sealer.seal(Ping().packet, into: &frame)
        try expectRefusal(opening.server.feed(frame), .unexpectedMessage)
    }

    @Test("a HelloDone with a wrong verify value: the client closes with finishedMismatch (209)")
    func wrongHelloDoneVerify() throws {
        var opening = try Opening(identity: TestKeys.ed25519)
        _ = opening.client.feed(opening.serverFlight)
        let schedule = try opening.schedule()
        var sealer = FrameSealer(keys: schedule.serverToClient)
        var forged = ByteBuffer()
        try sealer.seal(HelloDone(verify: Array(repeating: 0, count: 32)).packet, into: &forged)
        #expect(opening.client.feed(forged).kinds == [.close(.finishedMismatch)])
    }

    // MARK: Versions, key shares, key types

    @Test("a ClientHello of version 2: HelloError 200, which the client reports as 200")
    func unsupportedVersionAtServer() throws {
        var client = ClientChannelStateMachine(policy: .trustOnFirstUse(recorded: nil))
        var server = ServerChannelStateMachine(identity: TestKeys.ed25519)
        _ = client.start()
        let hello = ClientHello(version: 2, random: randomBytes(32), keyShare: Array(Curve25519.KeyAgreement.PrivateKey().publicKey.rawRepresentation))
        let refusal = try expectRefusal(server.feed(hello.packet.encoded()), .unsupportedVersion)
        let atClient = client.feed(refusal)
        #expect(atClient.kinds == [.close(.unsupportedVersion)])
        #expect(atClient.closeError?.message.contains("refused") == true)
        expectInert(&server, after: ClientHello(version: 1, random: randomBytes(32), keyShare: hello.keyShare).packet.encoded())
    }

    @Test("a ServerHello of version 2: the client closes with unsupportedVersion (200)")
    func unsupportedVersionAtClient() throws {
        let signer = Curve25519.Signing.PrivateKey()
        let identity = ServerIdentityKey(ed25519: signer)
        var client = ClientChannelStateMachine(policy: .pinned(identity.publicKey.fingerprint))
        let clientHello = client.start().written
        let hello = ServerHello(
            version: 2, random: randomBytes(32), keyShare: Array(Curve25519.KeyAgreement.PrivateKey().publicKey.rawRepresentation),
            keyType: "ed25519", identityKey: identity.publicKey.spki)
        #expect(client.feed(try forgedFlight(clientHello: clientHello, hello: hello, signer: signer)).kinds == [.close(.unsupportedVersion)])
    }

    /// X25519 public values that are malformed or of low order (their shared secret is all zeros).
    static let badShares: [(String, [UInt8])] = [
        ("all zero", Array(repeating: 0, count: 32)),
        ("u = 1", [1] + Array(repeating: 0, count: 31)),
        ("order-8 point", [UInt8](hex: "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")!),
        ("u = p - 1", [0xec] + Array(repeating: 0xff, count: 30) + [0x7f]),
        ("31 bytes", Array(repeating: 9, count: 31)),
        ("33 bytes", [9] + Array(repeating: 0, count: 32)),
        ("empty", []),
    ]

    @Test("a bad key share in ClientHello: HelloError 205", arguments: badShares)
    func badKeyShareAtServer(name: String, share: [UInt8]) throws {
        var server = ServerChannelStateMachine(identity: TestKeys.ed25519)
        let hello = ClientHello(version: 1, random: randomBytes(32), keyShare: share)
        try expectRefusal(server.feed(hello.packet.encoded()), .badKeyShare)
    }

    @Test("an all-zero key share in a correctly signed ServerHello: the client closes with badKeyShare (205)")
    func badKeyShareAtClient() throws {
        let signer = Curve25519.Signing.PrivateKey()
        let identity = ServerIdentityKey(ed25519: signer)
        var client = ClientChannelStateMachine(policy: .pinned(identity.publicKey.fingerprint))
        let clientHello = client.start().written
        let hello = ServerHello(
            version: 1, random: randomBytes(32), keyShare: Array(repeating: 0, count: 32),
            keyType: "ed25519", identityKey: identity.publicKey.spki)
        let flight = try forgedFlight(clientHello: clientHello, hello: hello, signer: signer)
        #expect(client.feed(flight).kinds == [.close(.badKeyShare)])
        expectInert(&client, after: flight)
    }

    @Test("an unknown identity key type: unsupportedKeyType (213)")
    func unknownKeyType() throws {
        let signer = Curve25519.Signing.PrivateKey()
        let identity = ServerIdentityKey(ed25519: signer)
        var client = ClientChannelStateMachine(policy: .trustOnFirstUse(recorded: nil))
        let clientHello = client.start().written
        let hello = ServerHello(
            version: 1, random: randomBytes(32), keyShare: Array(Curve25519.KeyAgreement.PrivateKey().publicKey.rawRepresentation),
            keyType: "ecdsa-p256", identityKey: identity.publicKey.spki)
        #expect(client.feed(try forgedFlight(clientHello: clientHello, hello: hello, signer: signer)).kinds == [.close(.unsupportedKeyType)])
    }

    @Test("a ServerHello random that is not 32 bytes: invalidField (118)")
    func shortServerRandom() throws {
        let signer = Curve25519.Signing.PrivateKey()
        let identity = ServerIdentityKey(ed25519: signer)
        var client = ClientChannelStateMachine(policy: .pinned(identity.publicKey.fingerprint))
        let clientHello = client.start().written
        let hello = ServerHello(
            version: 1, random: randomBytes(31), keyShare: Array(Curve25519.KeyAgreement.PrivateKey().publicKey.rawRepresentation),
            keyType: "ed25519", identityKey: identity.publicKey.spki)
        #expect(client.feed(try forgedFlight(clientHello: clientHello, hello: hello, signer: signer)).kinds == [.close(.invalidField)])
    }

    // MARK: Framing of the clear-text handshake

    @Test("a handshake packet header announcing 64 KiB: HelloError 100 from the 8-byte header alone")
    func oversizedHandshakePacket() throws {
        var server = ServerChannelStateMachine(identity: TestKeys.ed25519)
        var header = ByteBuffer()
        header.writeInteger(MessageType.clientHello.rawValue)
        header.writeInteger(UInt32(64 * 1024))
        try expectRefusal(server.feed(header), .frameTooLarge)

        var client = ClientChannelStateMachine(policy: .trustOnFirstUse(recorded: nil))
        _ = client.start()
        header.clear()
        header.writeInteger(MessageType.serverHello.rawValue)
        header.writeInteger(UInt32.max)
        #expect(client.feed(header).kinds == [.close(.frameTooLarge)])
    }

    @Test("a first packet other than ClientHello: HelloError 201")
    func serverExpectsClientHello() throws {
        var server = ServerChannelStateMachine(identity: TestKeys.ed25519)
        try expectRefusal(server.feed(Ping(time: 1).packet.encoded()), .unexpectedMessage)
    }

    @Test("ServerVerify before ServerHello: the client closes with unexpectedMessage (201)")
    func clientExpectsServerHello() throws {
        var opening = try Opening(identity: TestKeys.ed25519)
        let verifyOnly = try opening.serverFlight.plainPackets()[1]
        #expect(opening.client.feed(verifyOnly).kinds == [.close(.unexpectedMessage)])
    }

    @Test("a HelloError instead of ServerHello: the client reports the server's code")
    func helloErrorInsteadOfServerHello() throws {
        var client = ClientChannelStateMachine(policy: .trustOnFirstUse(recorded: nil))
        _ = client.start()
        let actions = client.feed(HelloError(code: ErrorCode(503), message: "overloaded, retry later").packet.encoded())
        #expect(actions.kinds == [.close(ErrorCode(503))])
        #expect(actions.closeError?.message.contains("overloaded, retry later") == true)
    }

    @Test("a ClientHello with a missing key: HelloError with the wire code naming it")
    func malformedClientHello() throws {
        var server = ServerChannelStateMachine(identity: TestKeys.ed25519)
        let packet = Packet(type: MessageType.clientHello.rawValue, body: ["version": .int(1), "random": .bytes(randomBytes(32))])
        let actions = server.feed(packet.encoded())
        try expectRefusal(actions, .missingKey)
        #expect(actions.closeError?.message.contains("key_share") == true)
    }
}
