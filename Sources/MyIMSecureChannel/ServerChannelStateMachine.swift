import Crypto
import MyIMWire
import NIOCore

/// The server side of the secure channel, free of any I/O.
///
/// Same contract as ``ClientChannelStateMachine``. A client whose handshake fails is told
/// why with a HelloError in clear before the close, as seed 000's "hello error" asks.
public struct ServerChannelStateMachine: Sendable {
    /// What only the handshake needs lives in its states and is gone once it is done: an
    /// established channel holds its two directions' keys and counters, nothing more.
    private enum State: Sendable {
        indirect case awaitingClientHello(
            identity: ServerIdentityKey, limits: WireLimits, ephemeralKey: Curve25519.KeyAgreement.PrivateKey, random: [UInt8])
        indirect case awaitingClientFinished(schedule: KeySchedule, opener: FrameOpener, session: SecureChannelSession, limits: WireLimits)
        case established(sealer: FrameSealer, opener: FrameOpener)
        case closed
    }

    private var state: State

    /// - Parameters:
    ///   - ephemeralKey, random: injectable for test vectors; fresh by default.
    public init(
        identity: ServerIdentityKey,
        limits: WireLimits = .default,
        ephemeralKey: Curve25519.KeyAgreement.PrivateKey = .init(),
        random: [UInt8] = randomBytes(HandshakeConstants.randomSize)
    ) {
        state = .awaitingClientHello(identity: identity, limits: limits, ephemeralKey: ephemeralKey, random: random)
    }

    public var isEstablished: Bool {
        if case .established = state { return true }
        return false
    }

    /// Consumes every complete unit in `buffer`; leaves a partial one there for next time.
    public mutating func receive(_ buffer: inout ByteBuffer) -> [SecureChannelAction] {
        var actions: [SecureChannelAction] = []
        do {
            while try step(&buffer, into: &actions) {}
        } catch {
            if case .established = state {} else {
                actions.append(.write(HelloError(code: error.code, message: error.message).packet.encoded()))
            }
            state = .closed
            actions.append(.close(error))
        }
        return actions
    }

    /// Seals a packet for the client. Only valid once established.
    public mutating func seal(_ packet: Packet, into output: inout ByteBuffer) throws(SecureChannelError) {
        guard case .established(var sealer, let opener) = state else {
            throw SecureChannelError(.notEstablished, "the secure channel is not established")
        }
        try sealer.seal(packet, into: &output)
        state = .established(sealer: sealer, opener: opener)
    }

    private mutating func step(_ buffer: inout ByteBuffer, into actions: inout [SecureChannelAction]) throws(SecureChannelError) -> Bool {
        switch state {
        case .closed:
            return false

        case .awaitingClientHello(let identity, let limits, let ephemeralKey, let random):
            let read: (packet: Packet, raw: ByteBuffer)?
            do { read = try Packet.read(from: &buffer, maxSize: limits.maxHandshakePacketSize, limits: limits) } catch {
                throw SecureChannelError(error)
            }
            guard let (packet, clientHelloBytes) = read else { return false }
            let hello: ClientHello = try ClientChannelStateMachine.expect(packet)
            guard hello.version == HandshakeConstants.version else {
                throw SecureChannelError(.unsupportedVersion, "protocol version \(hello.version) is not supported; this server speaks \(HandshakeConstants.version)")
            }
            guard hello.random.count == HandshakeConstants.randomSize else {
                throw SecureChannelError(.invalidField, "ClientHello's random is \(hello.random.count) bytes, not 32")
            }
            let shared = try ClientChannelStateMachine.agree(ephemeralKey, peerShare: hello.keyShare)

            let serverHello = ServerHello(
                version: HandshakeConstants.version, random: random, keyShare: Array(ephemeralKey.publicKey.rawRepresentation),
                keyType: identity.publicKey.type.rawValue, identityKey: identity.publicKey.spki)
            var out = ByteBuffer()
            out.writePacket(serverHello.packet)
            var transcript = SHA256()
            transcript.update(data: clientHelloBytes.readableBytesView)
            transcript.update(data: out.readableBytesView)
            let transcriptHash = Array(transcript.finalize())

            let signature: [UInt8]
            do { signature = try identity.signature(for: HandshakeConstants.signatureContext + transcriptHash) } catch {
                throw SecureChannelError(.badSignature, "the server could not sign the handshake: \(error)")
            }
            out.writePacket(ServerVerify(signature: signature).packet)
            actions.append(.write(out))

            let schedule = KeySchedule(sharedSecret: shared, transcriptHash: transcriptHash)
            let session = SecureChannelSession(serverKey: identity.publicKey, transcriptHash: transcriptHash, serverKeyFirstSeen: false)
            state = .awaitingClientFinished(
                schedule: schedule, opener: FrameOpener(keys: schedule.clientToServer, limits: limits, leavesChatsEncoded: true), session: session, limits: limits)
            return true

        case .awaitingClientFinished(let schedule, var opener, let session, let limits):
            guard let packet = try opener.open(from: &buffer) else { return false }
            let finished: ClientFinished = try ClientChannelStateMachine.expect(packet)
            guard schedule.isValidClientVerify(finished.verify) else {
                throw SecureChannelError(.finishedMismatch, "ClientFinished does not confirm the handshake keys")
            }
            var sealer = FrameSealer(keys: schedule.serverToClient, limits: limits)
            var out = ByteBuffer()
            try sealer.seal(HelloDone(verify: schedule.serverVerifyData).packet, into: &out)
            actions.append(.write(out))
            actions.append(.established(session))
            state = .established(sealer: sealer, opener: opener)
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
}
