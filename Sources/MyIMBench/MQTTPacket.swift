import NIOCore

// A minimal MQTT 3.1.1 codec for the reference broker of `myim bench pairs --reference mosquitto`:
// the packets a QoS 0 publish/subscribe client exchanges (CONNECT/CONNACK, SUBSCRIBE/SUBACK,
// PUBLISH, PINGREQ/PINGRESP, DISCONNECT), each encoded and decoded both ways so that the codec
// can be checked by a round trip. Not a general MQTT library: no will, no credentials, no
// UNSUBSCRIBE, no QoS 1/2 flows (a QoS 1/2 PUBLISH decodes, with its packet identifier).

/// One topic filter of a SUBSCRIBE and the QoS asked for it.
public struct MQTTSubscription: Sendable, Equatable {
    public var topic: String
    public var qos: UInt8

    public init(topic: String, qos: UInt8 = 0) {
        self.topic = topic
        self.qos = qos
    }
}

/// A PUBLISH: topic, payload and the fixed header's flags.
public struct MQTTPublish: Sendable, Equatable {
    public var topic: String
    public var payload: ByteBuffer
    /// 0, 1 or 2.
    public var qos: UInt8
    /// Present exactly when `qos` > 0.
    public var packetID: UInt16?
    public var retain: Bool
    public var dup: Bool

    public init(topic: String, payload: ByteBuffer, qos: UInt8 = 0, packetID: UInt16? = nil, retain: Bool = false, dup: Bool = false) {
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.packetID = packetID
        self.retain = retain
        self.dup = dup
    }
}

/// The MQTT 3.1.1 control packets the bench client uses.
public enum MQTTPacket: Sendable, Equatable {
    case connect(clientID: String, keepAlive: UInt16, cleanSession: Bool)
    case connack(sessionPresent: Bool, returnCode: UInt8)
    case publish(MQTTPublish)
    case subscribe(packetID: UInt16, subscriptions: [MQTTSubscription])
    case suback(packetID: UInt16, returnCodes: [UInt8])
    case pingreq
    case pingresp
    case disconnect

    /// The largest remaining length the 4-byte variable-length encoding can carry.
    public static let maxRemainingLength = 268_435_455
}

/// Why bytes are not a valid packet (for this codec).
public enum MQTTError: Error, Equatable, CustomStringConvertible {
    /// The remaining length announced exceeds the decoder's limit; nothing was allocated for it.
    case packetTooLarge(length: Int, limit: Int)
    /// The remaining length took more than 4 bytes.
    case malformedRemainingLength
    /// A packet type this codec does not know (0, 15, or one it does not implement).
    case unsupportedType(UInt8)
    /// The packet's contents do not follow MQTT 3.1.1.
    case malformed(String)
    /// An encoder was given something MQTT cannot carry (a string over 65,535 bytes, …).
    case unencodable(String)

    public var description: String {
        switch self {
        case .packetTooLarge(let length, let limit): "MQTT packet of \(length) bytes exceeds the limit of \(limit)"
        case .malformedRemainingLength: "MQTT remaining length longer than 4 bytes"
        case .unsupportedType(let type): "MQTT packet type \(type) is not supported here"
        case .malformed(let why): "malformed MQTT packet: \(why)"
        case .unencodable(let why): "cannot encode MQTT packet: \(why)"
        }
    }
}

// MARK: - Encoding

extension MQTTPacket {
    /// Appends the packet, fixed header included, to `buffer`.
    public func encode(into buffer: inout ByteBuffer) throws(MQTTError) {
        switch self {
        case .connect(let clientID, let keepAlive, let cleanSession):
            let id = try Self.checkedString(clientID)
            // "MQTT" (2 + 4), level, flags, keep alive.
            buffer.writeInteger(UInt8(0x10))
            Self.writeRemainingLength(10 + 2 + id.count, into: &buffer)
            Self.writeString(Array("MQTT".utf8), into: &buffer)
            buffer.writeInteger(UInt8(4))
            buffer.writeInteger(UInt8(cleanSession ? 0x02 : 0x00))
            buffer.writeInteger(keepAlive)
            Self.writeString(id, into: &buffer)
        case .connack(let sessionPresent, let returnCode):
            buffer.writeInteger(UInt8(0x20))
            buffer.writeInteger(UInt8(2))
            buffer.writeInteger(UInt8(sessionPresent ? 1 : 0))
            buffer.writeInteger(returnCode)
        case .publish(let publish):
            guard publish.qos <= 2 else { throw .unencodable("QoS \(publish.qos)") }
            guard (publish.qos == 0) == (publish.packetID == nil) else {
                throw .unencodable("a packet identifier goes with QoS 1 or 2, and only with them")
            }
            let topic = try Self.checkedString(publish.topic)
            let length = 2 + topic.count + (publish.packetID == nil ? 0 : 2) + publish.payload.readableBytes
            guard length <= Self.maxRemainingLength else { throw .unencodable("a PUBLISH of \(length) bytes") }
            var flags = publish.qos << 1
            if publish.dup { flags |= 0x08 }
            if publish.retain { flags |= 0x01 }
            buffer.writeInteger(UInt8(0x30) | flags)
            Self.writeRemainingLength(length, into: &buffer)
            Self.writeString(topic, into: &buffer)
            if let packetID = publish.packetID { buffer.writeInteger(packetID) }
            buffer.writeImmutableBuffer(publish.payload)
        case .subscribe(let packetID, let subscriptions):
            guard !subscriptions.isEmpty else { throw .unencodable("a SUBSCRIBE without topics") }
            var topics: [[UInt8]] = []
            for subscription in subscriptions {
                guard subscription.qos <= 2 else { throw .unencodable("QoS \(subscription.qos)") }
                topics.append(try Self.checkedString(subscription.topic))
            }
            buffer.writeInteger(UInt8(0x82))
            Self.writeRemainingLength(2 + topics.reduce(0) { $0 + 3 + $1.count }, into: &buffer)
            buffer.writeInteger(packetID)
            for (topic, subscription) in zip(topics, subscriptions) {
                Self.writeString(topic, into: &buffer)
                buffer.writeInteger(subscription.qos)
            }
        case .suback(let packetID, let returnCodes):
            buffer.writeInteger(UInt8(0x90))
            Self.writeRemainingLength(2 + returnCodes.count, into: &buffer)
            buffer.writeInteger(packetID)
            buffer.writeBytes(returnCodes)
        case .pingreq:
            buffer.writeInteger(UInt16(0xC000))
        case .pingresp:
            buffer.writeInteger(UInt16(0xD000))
        case .disconnect:
            buffer.writeInteger(UInt16(0xE000))
        }
    }

    /// The remaining length in MQTT's variable-length encoding: 7 bits a byte, low bits first.
    static func writeRemainingLength(_ length: Int, into buffer: inout ByteBuffer) {
        var value = length
        repeat {
            var byte = UInt8(value & 0x7F)
            value >>= 7
            if value > 0 { byte |= 0x80 }
            buffer.writeInteger(byte)
        } while value > 0
    }

    private static func checkedString(_ string: String) throws(MQTTError) -> [UInt8] {
        let bytes = Array(string.utf8)
        guard bytes.count <= Int(UInt16.max) else { throw .unencodable("a string of \(bytes.count) bytes") }
        return bytes
    }

    private static func writeString(_ bytes: [UInt8], into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt16(bytes.count))
        buffer.writeBytes(bytes)
    }
}

// MARK: - Decoding

extension MQTTPacket {
    /// Reads one whole packet from the front of `buffer`.
    ///
    /// Returns nil, consuming nothing, while the packet is incomplete. The remaining length is
    /// checked against `maxPacketSize` as soon as its bytes are there, before anything is kept
    /// or allocated for the body: a peer cannot make the decoder buffer more than that.
    public static func decode(from buffer: inout ByteBuffer, maxPacketSize: Int) throws(MQTTError) -> MQTTPacket? {
        guard let header = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) else { return nil }
        var length = 0
        var lengthBytes = 0
        while true {
            guard lengthBytes < 4 else { throw .malformedRemainingLength }
            guard let byte = buffer.getInteger(at: buffer.readerIndex + 1 + lengthBytes, as: UInt8.self) else { return nil }
            length |= Int(byte & 0x7F) << (7 * lengthBytes)
            lengthBytes += 1
            if byte & 0x80 == 0 { break }
        }
        guard length <= maxPacketSize else { throw .packetTooLarge(length: length, limit: maxPacketSize) }
        guard buffer.readableBytes >= 1 + lengthBytes + length else { return nil }
        buffer.moveReaderIndex(forwardBy: 1 + lengthBytes)
        var body = buffer.readSlice(length: length)!
        let packet = try parse(type: header >> 4, flags: header & 0x0F, body: &body)
        guard body.readableBytes == 0 else { throw .malformed("\(body.readableBytes) bytes left over in a packet of type \(header >> 4)") }
        return packet
    }

    private static func parse(type: UInt8, flags: UInt8, body: inout ByteBuffer) throws(MQTTError) -> MQTTPacket {
        func expectFlags(_ expected: UInt8, _ name: String) throws(MQTTError) {
            guard flags == expected else { throw .malformed("\(name) with flags \(flags)") }
        }
        switch type {
        case 1:
            try expectFlags(0, "CONNECT")
            guard try readString(&body) == "MQTT" else { throw .malformed("CONNECT for a protocol other than MQTT") }
            guard let level: UInt8 = body.readInteger(), level == 4 else { throw .malformed("CONNECT for a level other than 4 (3.1.1)") }
            guard let connectFlags: UInt8 = body.readInteger(), let keepAlive: UInt16 = body.readInteger() else {
                throw .malformed("CONNECT too short")
            }
            guard connectFlags & 0x01 == 0 else { throw .malformed("CONNECT with the reserved flag set") }
            guard connectFlags & ~0x02 == 0 else { throw .malformed("CONNECT with a will or credentials (not supported here)") }
            let clientID = try readString(&body)
            return .connect(clientID: clientID, keepAlive: keepAlive, cleanSession: connectFlags & 0x02 != 0)
        case 2:
            try expectFlags(0, "CONNACK")
            guard let ack: UInt8 = body.readInteger(), let code: UInt8 = body.readInteger(), ack & ~0x01 == 0 else {
                throw .malformed("CONNACK")
            }
            return .connack(sessionPresent: ack == 1, returnCode: code)
        case 3:
            let qos = (flags >> 1) & 0x03
            guard qos < 3 else { throw .malformed("PUBLISH with QoS 3") }
            let topic = try readString(&body)
            var packetID: UInt16?
            if qos > 0 {
                guard let id: UInt16 = body.readInteger() else { throw .malformed("PUBLISH without its packet identifier") }
                packetID = id
            }
            let payload = body.readSlice(length: body.readableBytes)!
            return .publish(MQTTPublish(topic: topic, payload: payload, qos: qos, packetID: packetID, retain: flags & 0x01 != 0, dup: flags & 0x08 != 0))
        case 8:
            try expectFlags(2, "SUBSCRIBE")
            guard let packetID: UInt16 = body.readInteger() else { throw .malformed("SUBSCRIBE too short") }
            var subscriptions: [MQTTSubscription] = []
            while body.readableBytes > 0 {
                let topic = try readString(&body)
                guard let qos: UInt8 = body.readInteger(), qos <= 2 else { throw .malformed("SUBSCRIBE with a bad QoS byte") }
                subscriptions.append(MQTTSubscription(topic: topic, qos: qos))
            }
            guard !subscriptions.isEmpty else { throw .malformed("SUBSCRIBE without topics") }
            return .subscribe(packetID: packetID, subscriptions: subscriptions)
        case 9:
            try expectFlags(0, "SUBACK")
            guard let packetID: UInt16 = body.readInteger() else { throw .malformed("SUBACK too short") }
            return .suback(packetID: packetID, returnCodes: body.readBytes(length: body.readableBytes) ?? [])
        case 12:
            try expectFlags(0, "PINGREQ")
            return .pingreq
        case 13:
            try expectFlags(0, "PINGRESP")
            return .pingresp
        case 14:
            try expectFlags(0, "DISCONNECT")
            return .disconnect
        default:
            throw .unsupportedType(type)
        }
    }

    private static func readString(_ body: inout ByteBuffer) throws(MQTTError) -> String {
        guard let length: UInt16 = body.readInteger() else { throw .malformed("a string's length is missing") }
        guard let string = body.readString(length: Int(length)) else { throw .malformed("a string of \(length) bytes runs past the packet") }
        return string
    }
}

// MARK: - NIO handlers

/// Frames MQTT packets from a byte stream (fixed header + remaining length), refusing any packet
/// whose remaining length exceeds `maxPacketSize` before buffering it.
public struct MQTTDecoder: ByteToMessageDecoder {
    public typealias InboundOut = MQTTPacket

    public let maxPacketSize: Int

    public init(maxPacketSize: Int = 64 * 1024) {
        self.maxPacketSize = maxPacketSize
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let packet = try MQTTPacket.decode(from: &buffer, maxPacketSize: maxPacketSize) else { return .needMoreData }
        context.fireChannelRead(Self.wrapInboundOut(packet))
        return .continue
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        return .needMoreData
    }
}

/// Writes MQTT packets as bytes.
public struct MQTTEncoder: MessageToByteEncoder {
    public typealias OutboundIn = MQTTPacket

    public init() {}

    public func encode(data: MQTTPacket, out: inout ByteBuffer) throws {
        try data.encode(into: &out)
    }
}
