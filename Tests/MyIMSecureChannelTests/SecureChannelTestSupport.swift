import Crypto
import MyIMSecureChannel
import MyIMWire
import NIOCore
import Testing

// Shared by the secure-channel tests: identities, a handshake driver, action inspection,
// byte surgery on buffers.

/// The identity keys the tests run against. The RSA key is generated once for the whole
/// test run, not per test: RSA-2048 key generation costs about 100 ms.
enum TestKeys {
    static let rsa: ServerIdentityKey = try! ServerIdentityKey.generateRSA()
    static let ed25519 = ServerIdentityKey.generateEd25519()
    /// A second, unrelated key: what a client that pinned or recorded something else holds.
    static let otherEd25519 = ServerIdentityKey.generateEd25519()
}

/// The two kinds of server identity, as test arguments.
enum IdentityKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case rsa = "RSA-2048 (rsa-pss-sha256)"
    case ed25519 = "Ed25519"

    var key: ServerIdentityKey {
        switch self {
        case .rsa: TestKeys.rsa
        case .ed25519: TestKeys.ed25519
        }
    }

    var testDescription: String { rawValue }
}

// MARK: - Actions

/// What an action is, without its payload: lets a test assert the exact sequence of actions.
enum ActionKind: Hashable, Sendable, CustomStringConvertible {
    case write
    case established
    case deliver
    case close(ErrorCode)

    var isClose: Bool {
        if case .close = self { return true }
        return false
    }

    var description: String {
        switch self {
        case .write: "write"
        case .established: "established"
        case .deliver: "deliver"
        case .close(let code): "close(\(code))"
        }
    }
}

extension SecureChannelAction {
    var kind: ActionKind {
        switch self {
        case .write: .write
        case .established: .established
        case .deliver: .deliver
        case .close(let error): .close(error.code)
        }
    }
}

extension Array where Element == SecureChannelAction {
    var kinds: [ActionKind] { map(\.kind) }

    /// Every `.write`, concatenated in order.
    var written: ByteBuffer {
        var out = ByteBuffer()
        for case .write(var bytes) in self { out.writeBuffer(&bytes) }
        return out
    }

    var sessions: [SecureChannelSession] {
        compactMap { if case .established(let session) = $0 { session } else { nil } }
    }

    var delivered: [Packet] {
        compactMap { if case .deliver(let packet) = $0 { packet } else { nil } }
    }

    var closeError: SecureChannelError? {
        for case .close(let error) in self { return error }
        return nil
    }
}

// MARK: - Both state machines behind one interface

protocol ChannelStateMachine {
    mutating func receive(_ buffer: inout ByteBuffer) -> [SecureChannelAction]
    mutating func seal(_ packet: Packet, into output: inout ByteBuffer) throws(SecureChannelError)
    var isEstablished: Bool { get }
}

extension ClientChannelStateMachine: ChannelStateMachine {}
extension ServerChannelStateMachine: ChannelStateMachine {}

extension ChannelStateMachine {
    /// Hands `bytes` over in one read.
    mutating func feed(_ bytes: ByteBuffer) -> [SecureChannelAction] {
        var buffer = bytes
        return receive(&buffer)
    }

    /// Hands `bytes` over one byte per read, keeping what the machine leaves unconsumed for
    /// the next read as a socket handler would; returns every action and the bytes left over.
    mutating func dripFeed(_ bytes: ByteBuffer) -> (actions: [SecureChannelAction], leftover: Int) {
        var pending = ByteBuffer()
        var actions: [SecureChannelAction] = []
        for byte in bytes.readableBytesView {
            pending.writeInteger(byte)
            actions += receive(&pending)
        }
        return (actions, pending.readableBytes)
    }

    /// Seals each packet, in order, into one buffer.
    mutating func sealAll(_ packets: [Packet]) throws -> ByteBuffer {
        var out = ByteBuffer()
        for packet in packets { try seal(packet, into: &out) }
        return out
    }
}

// MARK: - A full handshake

/// The machines and the bytes of one completed handshake.
struct Handshake {
    var client: ClientChannelStateMachine
    var server: ServerChannelStateMachine
    /// ClientHello, in clear.
    var clientHello: ByteBuffer
    /// ServerHello followed by ServerVerify, in clear.
    var serverFlight: ByteBuffer
    /// The ClientFinished frame.
    var clientFinished: ByteBuffer
    /// The HelloDone frame.
    var helloDone: ByteBuffer
    var clientSession: SecureChannelSession
    var serverSession: SecureChannelSession

    /// Runs client and server against each other, checking the exact actions of every step.
    /// With `dripFeed`, the server's bytes reach the client one byte at a time.
    init(
        identity: ServerIdentityKey,
        policy: ServerKeyPolicy? = nil,
        clientEphemeral: Curve25519.KeyAgreement.PrivateKey = .init(),
        serverEphemeral: Curve25519.KeyAgreement.PrivateKey = .init(),
        clientRandom: [UInt8] = randomBytes(HandshakeConstants.randomSize),
        serverRandom: [UInt8] = randomBytes(HandshakeConstants.randomSize),
        dripFeed: Bool = false
    ) throws {
        client = ClientChannelStateMachine(
            policy: policy ?? .pinned(identity.publicKey.fingerprint), ephemeralKey: clientEphemeral, random: clientRandom)
        server = ServerChannelStateMachine(identity: identity, ephemeralKey: serverEphemeral, random: serverRandom)

        func toClient(_ bytes: ByteBuffer, _ client: inout ClientChannelStateMachine) -> [SecureChannelAction] {
            guard dripFeed else { return client.feed(bytes) }
            let (actions, leftover) = client.dripFeed(bytes)
            #expect(leftover == 0)
            return actions
        }

        let start = client.start()
        try #require(start.kinds == [.write])
        clientHello = start.written

        let hello = server.feed(clientHello)
        try #require(hello.kinds == [.write], "server answered ClientHello with \(hello.kinds): \(hello.closeError?.description ?? "")")
        serverFlight = hello.written

        let finished = toClient(serverFlight, &client)
        try #require(finished.kinds == [.write], "client answered the server's flight with \(finished.kinds): \(finished.closeError?.description ?? "")")
        clientFinished = finished.written

        let done = server.feed(clientFinished)
        try #require(done.kinds == [.write, .established], "server answered ClientFinished with \(done.kinds): \(done.closeError?.description ?? "")")
        helloDone = done.written
        serverSession = done.sessions[0]

        let established = toClient(helloDone, &client)
        try #require(established.kinds == [.established], "client answered HelloDone with \(established.kinds): \(established.closeError?.description ?? "")")
        clientSession = established.sessions[0]
    }
}

// MARK: - Bytes

extension ByteBuffer {
    /// A copy with bit `bit` (0 = least significant) of the byte at `offset` (from the reader
    /// index) inverted.
    func flippingBit(_ bit: Int, atOffset offset: Int) -> ByteBuffer {
        var copy = self
        let index = readerIndex + offset
        copy.setInteger(getInteger(at: index, as: UInt8.self)! ^ (1 << bit), at: index)
        return copy
    }

    var bytes: [UInt8] { Array(readableBytesView) }

    /// Splits a buffer holding whole plain packets into each packet's exact bytes.
    func plainPackets() throws -> [ByteBuffer] {
        var rest = self
        var packets: [ByteBuffer] = []
        while rest.readableBytes > 0 {
            let (_, raw) = try #require(try Packet.read(from: &rest, maxSize: 1 << 20))
            packets.append(raw)
        }
        return packets
    }
}

extension Array where Element == UInt8 {
    /// Parses lower-case or upper-case hex; nil if it is not whole bytes of hex digits.
    init?(hex: String) {
        let digits = Array(hex.utf8)
        guard digits.count % 2 == 0 else { return nil }
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
            default: nil
            }
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        for index in stride(from: 0, to: digits.count, by: 2) {
            guard let high = nibble(digits[index]), let low = nibble(digits[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
        }
        self = bytes
    }
}

/// Offset of the first occurrence of `needle` in `haystack`.
func offset(of needle: [UInt8], in haystack: [UInt8]) -> Int? {
    guard needle.count <= haystack.count else { return nil }
    return (0...(haystack.count - needle.count)).first { haystack[$0..<($0 + needle.count)].elementsEqual(needle) }
}

/// A few application packets of different sizes and padding buckets.
func samplePackets(from sender: String) -> [Packet] {
    [
        Ping(time: 1).packet,
        Chat(target: .user("bob@example.org"), content: .text("hello from \(sender)"), clientMessageID: "\(sender)-1").packet,
        Packet(type: MessageType.fileChunk.rawValue, body: ["data": .bytes(Array(repeating: 0xab, count: 5000))]),
        Pong(time: 2).packet,
        Chat(target: .group(42), content: .text(String(repeating: "é", count: 300)), clientMessageID: "\(sender)-2", qos: .bestEffort).packet,
    ]
}
