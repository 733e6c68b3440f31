import Crypto
import MyIMWire
import NIOCore

/// The client side of the secure channel, free of any I/O.
///
/// Feed it what the socket reads with ``receive(_:)`` and perform the actions it returns;
/// once it has returned ``SecureChannelAction/established(_:)``, ``seal(_:)`` turns
/// packets into frames. Any failure yields one ``SecureChannelAction/close(_:)`` and the
/// machine ignores everything after it.
public struct ClientChannelStateMachine: Sendable {
    private enum State: Sendable {
        case idle
        case awaitingServerHello(clientHello: ByteBuffer)
        case awaitingServerVerify(transcriptHash: [UInt8], serverHello: ServerHello, serverKey: ServerPublicKey, firstSeen: Bool)
        case awaitingHelloDone(schedule: KeySchedule, sealer: FrameSealer, opener: FrameOpener, session: SecureChannelSession)
        case established(sealer: FrameSealer, opener: FrameOpener)
        case closed
    }

    private var state: State = .idle
    private let policy: ServerKeyPolicy
    private let limits: WireLimits
    private let ephemeralKey: Curve25519.KeyAgreement.PrivateKey
    private let random: [UInt8]
    private var earlyPackets: [Packet]

    /// - Parameters:
    ///   - earlyPackets: sent right after ClientFinished, in the same write (c2s frames 1, 2,
    ///     …), before HelloDone arrives (PROTOCOL §5.1): a token (41), so that the session
    ///     opens a round trip sooner. They are sealed only once ServerVerify has verified, so
    ///     only the server holding the key the policy accepts can open them.
    ///   - ephemeralKey, random: injectable for test vectors; fresh by default.
    public init(
        policy: ServerKeyPolicy,
        limits: WireLimits = .default,
        earlyPackets: [Packet] = [],
        ephemeralKey: Curve25519.KeyAgreement.PrivateKey = .init(),
        random: [UInt8] = randomBytes(HandshakeConstants.randomSize)
    ) {
        self.policy = policy
        self.limits = limits
        self.earlyPackets = earlyPackets
        self.ephemeralKey = ephemeralKey
        self.random = random
    }

    public var isEstablished: Bool {
        if case .established = state { return true }
        return false
    }

    /// Begins the handshake: returns the ClientHello to send.
    public mutating func start() -> [SecureChannelAction] {
        guard case .idle = state else { return [] }
        let hello = ClientHello(version: HandshakeConstants.version, random: random, keyShare: Array(ephemeralKey.publicKey.rawRepresentation))
        let bytes = hello.packet.encoded()
        state = .awaitingServerHello(clientHello: bytes)
        return [.write(bytes)]
    }

    /// Consumes every complete unit in `buffer`; leaves a partial one there for next time.
    public mutating func receive(_ buffer: inout ByteBuffer) -> [SecureChannelAction] {
        var actions: [SecureChannelAction] = []
        do {
            while try step(&buffer, into: &actions) {}
        } catch {
            state = .closed
            actions.append(.close(error))
        }
        return actions
    }

    /// Seals a packet for the server. Only valid once established.
    public mutating func seal(_ packet: Packet, into output: inout ByteBuffer) throws(SecureChannelError) {
        guard case .established(var sealer, let opener) = state else {
            throw SecureChannelError(.notEstablished, "the secure channel is not established")
        }
        try sealer.seal(packet, into: &output)
        state = .established(sealer: sealer, opener: opener)
    }

    /// Runs one step; returns false when more bytes are needed.
    private mutating func step(_ buffer: inout ByteBuffer, into actions: inout [SecureChannelAction]) throws(SecureChannelError) -> Bool {
        switch state {
        case .idle, .closed:
            return false

        case .awaitingServerHello(let clientHello):
            guard let (packet, raw) = try readPlain(&buffer) else { return false }
            let hello: ServerHello = try Self.expect(packet)
            let serverKey = try checkServerHello(hello)
            let firstSeen = try checkPolicy(serverKey.fingerprint)
            var transcript = SHA256()
            transcript.update(data: clientHello.readableBytesView)
            transcript.update(data: raw.readableBytesView)
            state = .awaitingServerVerify(
                transcriptHash: Array(transcript.finalize()), serverHello: hello, serverKey: serverKey, firstSeen: firstSeen)
            return true

        case .awaitingServerVerify(let transcriptHash, let hello, let serverKey, let firstSeen):
            guard let (packet, _) = try readPlain(&buffer) else { return false }
            let verify: ServerVerify = try Self.expect(packet)
            guard serverKey.isValidSignature(verify.signature, for: HandshakeConstants.signatureContext + transcriptHash) else {
                throw SecureChannelError(.badSignature, "the server's signature over the handshake does not verify with key \(serverKey.fingerprint)")
            }
            let shared = try Self.agree(ephemeralKey, peerShare: hello.keyShare)
            let schedule = KeySchedule(sharedSecret: shared, transcriptHash: transcriptHash)
            var sealer = FrameSealer(keys: schedule.clientToServer, limits: limits)
            var out = ByteBuffer()
            try sealer.seal(ClientFinished(verify: schedule.clientVerifyData).packet, into: &out)
            for packet in earlyPackets { try sealer.seal(packet, into: &out) }
            earlyPackets = []
            actions.append(.write(out))
            let session = SecureChannelSession(serverKey: serverKey, transcriptHash: transcriptHash, serverKeyFirstSeen: firstSeen)
            state = .awaitingHelloDone(
                schedule: schedule, sealer: sealer, opener: FrameOpener(keys: schedule.serverToClient, limits: limits), session: session)
            return true

        case .awaitingHelloDone(let schedule, let sealer, var opener, let session):
            // A server that could not open ClientFinished answers in clear (it cannot trust
            // the keys); 1006 is never a valid frame length, so the two cannot be confused.
            if buffer.peekPacketType() == MessageType.helloError.rawValue {
                guard let (packet, _) = try readPlain(&buffer) else { return false }
                throw Self.refusal(packet)
            }
            guard let packet = try opener.open(from: &buffer) else { return false }
            let done: HelloDone = try Self.expect(packet)
            guard schedule.isValidServerVerify(done.verify) else {
                throw SecureChannelError(.finishedMismatch, "the server's HelloDone does not confirm the handshake keys")
            }
            state = .established(sealer: sealer, opener: opener)
            actions.append(.established(session))
            return true

        case .established(let sealer, var opener):
            guard let packet = try opener.open(from: &buffer) else { return false }
            state = .established(sealer: sealer, opener: opener)
            guard packet.type < MessageType.clientHello.rawValue || packet.type > MessageType.helloError.rawValue else {
                throw SecureChannelError(.unexpectedMessage, "handshake message \(packet.type) after the handshake")
            }
            actions.append(.deliver(packet))
            return true
        }
    }

    private func readPlain(_ buffer: inout ByteBuffer) throws(SecureChannelError) -> (Packet, ByteBuffer)? {
        do {
            return try Packet.read(from: &buffer, maxSize: limits.maxHandshakePacketSize, limits: limits)
        } catch {
            throw SecureChannelError(error)
        }
    }

    /// Decodes the expected handshake message; a HelloError becomes the server's error.
    static func expect<M: WireMessage>(_ packet: Packet) throws(SecureChannelError) -> M {
        if packet.type == MessageType.helloError.rawValue { throw refusal(packet) }
        guard packet.type == M.messageType.rawValue else {
            throw SecureChannelError(.unexpectedMessage, "expected handshake message \(M.messageType.rawValue), got \(packet.type)")
        }
        do { return try M(body: packet.body) } catch { throw SecureChannelError(error) }
    }

    /// The error a HelloError from the server stands for.
    static func refusal(_ packet: Packet) -> SecureChannelError {
        guard let refusal = try? HelloError(body: packet.body) else {
            return SecureChannelError(.unexpectedMessage, "the server refused the handshake with a malformed HelloError")
        }
        return SecureChannelError(ErrorCode(Int(clamping: refusal.code)), "the server refused the handshake: \(refusal.message)")
    }

    private func checkServerHello(_ hello: ServerHello) throws(SecureChannelError) -> ServerPublicKey {
        guard hello.version == HandshakeConstants.version else {
            throw SecureChannelError(.unsupportedVersion, "the server speaks protocol version \(hello.version); this client speaks \(HandshakeConstants.version)")
        }
        guard hello.random.count == HandshakeConstants.randomSize else {
            throw SecureChannelError(.invalidField, "ServerHello's random is \(hello.random.count) bytes, not 32")
        }
        guard let keyType = IdentityKeyType(rawValue: hello.keyType) else {
            throw SecureChannelError(.unsupportedKeyType, "the server's identity key type '\(hello.keyType)' is not supported")
        }
        return try ServerPublicKey(type: keyType, spki: hello.identityKey)
    }

    private func checkPolicy(_ presented: KeyFingerprint) throws(SecureChannelError) -> Bool {
        switch policy {
        case .pinned(let pinned):
            guard presented == pinned else {
                throw SecureChannelError(.serverKeyMismatch, "the server presented key \(presented) but \(pinned) is pinned")
            }
            return false
        case .trustOnFirstUse(let recorded?):
            guard presented == recorded else {
                throw SecureChannelError(.serverKeyChanged, "the server presented key \(presented) but \(recorded) was recorded for it earlier")
            }
            return false
        case .trustOnFirstUse(nil):
            return true
        }
    }

    /// X25519 with the peer's share; rejects malformed shares and the all-zero result of a
    /// low-order point.
    static func agree(_ key: Curve25519.KeyAgreement.PrivateKey, peerShare: [UInt8]) throws(SecureChannelError) -> [UInt8] {
        guard peerShare.count == HandshakeConstants.keyShareSize,
              let peer = try? Curve25519.KeyAgreement.PublicKey(rawRepresentation: peerShare),
              let shared = try? key.sharedSecretFromKeyAgreement(with: peer)
        else {
            throw SecureChannelError(.badKeyShare, "the peer's key share is not a 32-byte X25519 public key")
        }
        let bytes = shared.withUnsafeBytes { Array($0) }
        guard bytes.contains(where: { $0 != 0 }) else {
            throw SecureChannelError(.badKeyShare, "the peer's key share is a low-order point")
        }
        return bytes
    }
}
