// libFuzzer entry point for the layer-2/3 decoders of MyIMWire and the layer-1 frames of
// MyIMSecureChannel (in FrameFuzzing.swift). See ../../README.md.
//
// Every input is decoded as one whole packet, as a stream of packets, and as a bare body,
// each under the default limits and under small ones. Any decode that succeeds must
// re-encode to exactly the input bytes and decode again to the same value; any failure must
// carry a 1xx wire error code. A violation calls fatalError, which libFuzzer reports as a crash.

import MyIMWire
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Small enough that short inputs cross every limit.
let smallLimits: WireLimits = {
    var limits = WireLimits()
    limits.maxFrameSize = 512
    limits.maxHandshakePacketSize = 256
    limits.maxDepth = 4
    limits.maxContainerCount = 8
    limits.maxValueCount = 32
    limits.maxKeyLength = 8
    limits.maxStringLength = 16
    limits.maxBytesLength = 32
    return limits
}()

let allLimits = [WireLimits.default, smallLimits]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = ByteBuffer(bytes: UnsafeBufferPointer(start: data, count: size))
    for limits in allLimits {
        decodeWhole(input, limits: limits)
        for maxSize in [limits.maxFrameSize, limits.maxHandshakePacketSize, 64] {
            decodeStream(input, maxSize: maxSize, limits: limits)
        }
        decodeBody(input, limits: limits)
    }
    fuzzFrames(input)
    return 0
}

/// `Packet(decoding:)`: the buffer must be exactly one packet.
func decodeWhole(_ input: ByteBuffer, limits: WireLimits) {
    do throws(WireError) {
        let packet = try Packet(decoding: input, limits: limits)
        checkRoundTrip(packet, raw: input, limits: limits)
    } catch {
        checkCode(error)
    }
}

/// `Packet.read`: as many packets as the stream holds, then nil (consuming nothing) or an error.
func decodeStream(_ input: ByteBuffer, maxSize: Int, limits: WireLimits) {
    var stream = input
    while true {
        let before = stream.readerIndex
        do throws(WireError) {
            guard let (packet, raw) = try Packet.read(from: &stream, maxSize: maxSize, limits: limits) else {
                if stream.readerIndex != before { fatalError("an incomplete Packet.read consumed bytes") }
                return
            }
            if raw.readableBytes > maxSize { fatalError("a \(raw.readableBytes)-byte packet passed maxSize \(maxSize)") }
            if stream.readerIndex - before != raw.readableBytes { fatalError("Packet.read consumed other than raw") }
            checkRoundTrip(packet, raw: raw, limits: limits)
        } catch {
            checkCode(error)
            return
        }
    }
}

/// `WireParser.parseBody`: the whole input as one layer-3 dict.
func decodeBody(_ input: ByteBuffer, limits: WireLimits) {
    do throws(WireError) {
        let body = try WireParser.parseBody(input, limits: limits)
        var encoded = ByteBuffer()
        encoded.writeWireDict(body)
        if encoded != input { fatalError("a body re-encodes differently: \(hex(input)) -> \(hex(encoded))") }
        let again = try WireParser.parseBody(encoded, limits: limits)
        if again != body { fatalError("parseBody(encode(body)) != body for \(hex(input))") }
    } catch {
        checkCode(error)
    }
}

func checkRoundTrip(_ packet: Packet, raw: ByteBuffer, limits: WireLimits) {
    let encoded = packet.encoded()
    if encoded != raw { fatalError("a packet re-encodes differently: \(hex(raw)) -> \(hex(encoded))") }
    do throws(WireError) {
        let again = try Packet(decoding: encoded, limits: limits)
        if again != packet { fatalError("decode(encode(packet)) != packet for \(hex(raw))") }
    } catch {
        fatalError("the re-encoding of \(hex(raw)) fails to decode: \(error)")
    }
}

func checkCode(_ error: WireError) {
    guard (100...114).contains(error.code.rawValue) else { fatalError("a decoder threw a non-wire code: \(error)") }
}

func hex(_ buffer: ByteBuffer) -> String {
    let digits: [Character] = Array("0123456789abcdef")
    var text = ""
    for byte in buffer.readableBytesView.prefix(512) {
        text.append(digits[Int(byte >> 4)])
        text.append(digits[Int(byte & 0xF)])
    }
    return buffer.readableBytes > 512 ? text + "…(\(buffer.readableBytes) bytes)" : text
}

// MARK: - Entry point

/// libFuzzer's driver. SwiftPM links every Swift executable with its entry point renamed to
/// `WireFuzzer_main` (and `main` aliased to it), so libFuzzer's own `main` cannot be used;
/// instead this module's `main` hands control to the driver, which behaves exactly the same.
@_extern(c, "LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
) -> CInt

@main
enum WireFuzzerMain {
    static func main() {
        let arguments = CommandLine.arguments
        if arguments.count == 3, arguments[1] == "--write-seeds" {
            writeSeeds(to: arguments[2])
            exit(0)
        }
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv, { data, size in fuzz(data, size) }))
    }
}

/// `WireFuzzer --write-seeds DIR` writes the seed corpus: valid packets from the encoder,
/// then the same packets sealed as frames under the harness's fixed keys.
func writeSeeds(to directory: String) {
    let packets = seedPackets()
    var seeds = packets.map { Array($0.encoded().readableBytesView) }
    // Two packets back to back, for the stream decoder.
    seeds.append(Array(packets[1].encoded().readableBytesView) + Array(packets[2].encoded().readableBytesView))
    seeds += frameSeeds(packets)
    for (index, bytes) in seeds.enumerated() {
        let path = "\(directory)/seed-\(index < 10 ? "0" : "")\(index)"
        guard let file = fopen(path, "wb") else { fatalError("cannot write \(path)") }
        _ = bytes.withUnsafeBufferPointer { fwrite($0.baseAddress, 1, $0.count, file) }
        fclose(file)
    }
    print("wrote \(seeds.count) seeds to \(directory)")
}

func seedPackets() -> [Packet] {
    var twenty = WireDict()
    for index in 0..<20 { twenty["key\(index)"] = .int(Int64(index)) }
    return [
        Packet(type: 0),
        Packet(type: 1, body: ["a": .int(1)]),
        Packet(type: 20, body: ["code": .int(112), "message": .string("bad"), "ok": .bool(false)]),
        Packet(type: 0xFFFF_FFFF, body: ["min": .int(.min), "max": .int(.max), "t": .bool(true)]),
        Packet(type: 7, body: ["l": .list([.int(-1), .string("\u{E9}"), .bool(true), .bytes([0, 0xFF]), .list([]), .dict([:])])]),
        Packet(type: 8, body: ["d": .dict(["e": .dict(["f": .list([.dict(["g": .string("deep")])])])])]),
        Packet(type: 9, body: ["blob": .bytes(Array(0..<24)), "s": .string("0123456789abcdef")]),
        Packet(type: 10, body: [
            "k0": .bool(true), "k1": .bool(false), "k2": .int(2), "k3": .string("x"),
            "k4": .bytes([4]), "k5": .list([.int(5)]), "k6": .dict(["z": .int(6)]), "k7": .string(""),
        ]),
        Packet(type: 11, body: twenty),
        Packet(type: 1006, body: [
            "members": .list((0..<12).map { .string("user\($0)") }),
            "image": .bytes((0..<300).map { UInt8(truncatingIfNeeded: $0 &* 7) }),
            "emoji": .string("\u{1F600}\u{1F30D}"),
        ]),
        Packet(type: 12, body: ["l": .list([.list([.list([.list([])])])])]),
        // 45 values in 5 lists of 8: valid by default, too many values for the small limits.
        Packet(type: 13, body: [
            "a": .list(Array(repeating: .bool(true), count: 8)),
            "b": .list(Array(repeating: .bool(false), count: 8)),
            "c": .list(Array(repeating: .int(3), count: 8)),
            "d": .list(Array(repeating: .bytes([]), count: 8)),
            "e": .list(Array(repeating: .string("e"), count: 8)),
        ]),
    ]
}
