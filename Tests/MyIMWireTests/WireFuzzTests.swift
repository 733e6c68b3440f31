import Foundation
import MyIMWire
import NIOCore
import Testing

/// SplitMix64: a tiny deterministic generator, so every run mutates the same way on every
/// platform and Swift version (the standard library's `random(in:using:)` makes no such promise).
struct SplitMix64 {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A number in `0..<bound` (the modulo bias is irrelevant here).
    mutating func below(_ bound: Int) -> Int {
        precondition(bound > 0)
        return Int(next() % UInt64(bound))
    }

    mutating func pick<T>(_ choices: [T]) -> T { choices[below(choices.count)] }

    mutating func chance(_ percent: Int) -> Bool { below(100) < percent }
}

/// Limits small enough that the seeds cross every one of them after a few mutations.
private let smallLimits: WireLimits = {
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

private let interestingBytes: [UInt8] = [0x00, 0xFF, 0x7F, 0x80, 0x01, 0x02, 0x05, 0x06, 0x07, 0x08, 0x10, 0x40, 0x41]

/// Seeds: valid packets, small and large, touching every value type and nesting.
private let seedPackets: [Packet] = [
    Packet(type: 0),
    Packet(type: 1, body: ["a": .int(1)]),
    Packet(type: 20, body: ["code": .int(112), "message": .string("bad"), "ok": .bool(false)]),
    Packet(type: 0xFFFF_FFFF, body: ["min": .int(.min), "max": .int(.max), "t": .bool(true)]),
    Packet(type: 7, body: ["l": .list([.int(-1), .string("\u{E9}"), .bool(true), .bytes([0, 0xFF]), .list([]), .dict([:])])]),
    Packet(type: 8, body: ["d": .dict(["e": .dict(["f": .list([.dict(["g": .string("deep")])])])])]),
    Packet(type: 9, body: ["blob": .bytes(Array(0..<24)), "s": .string("0123456789abcdef")]),
    Packet(type: 10, body: WireDict(dictionaryLiteral: ("k0", .bool(true)), ("k1", .bool(false)), ("k2", .int(2)),
                                    ("k3", .string("x")), ("k4", .bytes([4])), ("k5", .list([.int(5)])),
                                    ("k6", .dict(["z": .int(6)])), ("k7", .string("")))),
    Packet(type: 11, body: {
        var body = WireDict()
        for index in 0..<20 { body["key\(index)"] = .int(Int64(index)) }
        return body
    }()),
    Packet(type: 12, body: WireDict(dictionaryLiteral: ("a", .list(Array(repeating: .bool(true), count: 8))),
                                    ("b", .list(Array(repeating: .bool(false), count: 8))),
                                    ("c", .list(Array(repeating: .int(3), count: 8))),
                                    ("d", .list(Array(repeating: .bytes([]), count: 8))),
                                    ("e", .list(Array(repeating: .string("e"), count: 8))))),
    Packet(type: 1006, body: [
        "members": .list((0..<12).map { .string("user\($0)") }),
        "image": .bytes((0..<300).map { UInt8(truncatingIfNeeded: $0 &* 7) }),
        "emoji": .string("\u{1F600}\u{1F30D}"),
    ]),
]

/// What one input did, for the statistics the tests print.
private struct FuzzStats: CustomStringConvertible {
    var inputs = 0
    var decoded = 0
    var streamed = 0
    var codes: [Int: Int] = [:]

    mutating func record(_ error: WireError) { codes[error.code.rawValue, default: 0] += 1 }

    var description: String {
        let codeList = codes.keys.sorted().map { "\($0)×\(codes[$0]!)" }.joined(separator: " ")
        return "\(inputs) inputs, \(decoded) whole-packet decodes, \(streamed) streamed packets; errors: \(codeList)"
    }
}

/// Runs one input through every decoder and checks what must hold; returns the problems found.
private func check(_ bytes: [UInt8], stats: inout FuzzStats) -> [String] {
    var problems: [String] = []
    stats.inputs += 1
    for limits in [smallLimits, WireLimits.default] {
        // A buffer that must be exactly one packet.
        do throws(WireError) {
            let packet = try Packet(decoding: ByteBuffer(bytes: bytes), limits: limits)
            stats.decoded += 1
            problems += roundTrip(packet, raw: bytes, limits: limits)
        } catch {
            stats.record(error)
            if !(100...114).contains(error.code.rawValue) { problems.append("unexpected code \(error.code): \(error)") }
        }

        // The body with one top-level dict left encoded (what an endpoint forwards): it never
        // fails where the full parse succeeds, and agrees with it on everything.
        if bytes.count >= Packet.headerSize {
            let body = ByteBuffer(bytes: bytes[Packet.headerSize...])
            let full = try? WireParser.parseBody(body, limits: limits)
            let keys = full.map { $0.entries.compactMap { entry -> String? in if case .dict = entry.value { entry.key } else { nil } } } ?? []
            for key in keys.prefix(2) + ["body"] {
                do throws(WireError) {
                    let (rest, kept) = try WireParser.parseBody(body, keepingEncoded: key, limits: limits)
                    if let full {
                        var expected = full
                        if full[key]?.isDict == true { expected[key] = nil }
                        if rest != expected { problems.append("keeping '\(key)' changed the rest") }
                        if let kept, (try? WireParser.parseBody(kept, limits: limits)).map(WireValue.dict) != full[key] {
                            problems.append("the kept '\(key)' does not parse to the full parse's value")
                        }
                    }
                } catch {
                    if full != nil { problems.append("keeping '\(key)' failed where the full parse succeeded: \(error)") }
                    if !(100...114).contains(error.code.rawValue) { problems.append("unexpected code \(error.code): \(error)") }
                }
            }
        }

        // A stream holding any number of packets, read to the end, with both size caps.
        for maxSize in [limits.maxFrameSize, limits.maxHandshakePacketSize] {
            var stream = ByteBuffer(bytes: bytes)
            // Each packet consumes at least 8 bytes, so this bound is never the reason to stop.
            for _ in 0...(bytes.count / Packet.headerSize) {
                let readerIndex = stream.readerIndex
                do throws(WireError) {
                    guard let (packet, raw) = try Packet.read(from: &stream, maxSize: maxSize, limits: limits) else {
                        if stream.readerIndex != readerIndex { problems.append("an incomplete read consumed bytes") }
                        break
                    }
                    stats.streamed += 1
                    if raw.readableBytes > maxSize { problems.append("a \(raw.readableBytes)-byte packet passed maxSize \(maxSize)") }
                    problems += roundTrip(packet, raw: Array(raw.readableBytesView), limits: limits)
                } catch {
                    stats.record(error)
                    if !(100...114).contains(error.code.rawValue) { problems.append("unexpected code \(error.code): \(error)") }
                    break
                }
            }
        }
    }
    return problems
}

/// A decoded packet re-encodes to the bytes it came from, and those decode to the same packet.
private func roundTrip(_ packet: Packet, raw: [UInt8], limits: WireLimits) -> [String] {
    let encoded = packet.encoded()
    var problems: [String] = []
    if Array(encoded.readableBytesView) != raw {
        problems.append("re-encoding differs from the input: \(hexString(raw)) -> \(hexString(Array(encoded.readableBytesView)))")
    }
    do throws(WireError) {
        let again = try Packet(decoding: encoded, limits: limits)
        if again != packet { problems.append("decode(encode(p)) != p for \(hexString(raw))") }
    } catch {
        problems.append("the re-encoding of \(hexString(raw)) fails to decode: \(error)")
    }
    return problems
}

private func hexString(_ bytes: [UInt8]) -> String {
    bytes.prefix(256).map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
        + (bytes.count > 256 ? "…(\(bytes.count) bytes)" : "")
}

/// Applies 1 to 4 random mutations.
private func mutate(_ input: [UInt8], seeds: [[UInt8]], rng: inout SplitMix64) -> [UInt8] {
    var bytes = input
    for _ in 0...rng.below(4) {
        switch rng.below(9) {
        case 0 where !bytes.isEmpty:  // flip one bit
            let index = rng.below(bytes.count)
            bytes[index] ^= 1 << UInt8(rng.below(8))
        case 1 where !bytes.isEmpty:  // set a byte to an interesting value
            bytes[rng.below(bytes.count)] = rng.pick(interestingBytes)
        case 2:  // insert a short run of random or interesting bytes
            let run = (0...rng.below(8)).map { _ in rng.chance(50) ? rng.pick(interestingBytes) : UInt8(truncatingIfNeeded: rng.next()) }
            bytes.insert(contentsOf: run, at: rng.below(bytes.count + 1))
        case 3 where !bytes.isEmpty:  // delete a range
            let start = rng.below(bytes.count)
            let end = min(bytes.count, start + 1 + rng.below(16))
            bytes.removeSubrange(start..<end)
        case 4 where !bytes.isEmpty:  // duplicate a range somewhere else
            let start = rng.below(bytes.count)
            let end = min(bytes.count, start + 1 + rng.below(32))
            let range = Array(bytes[start..<end])
            bytes.insert(contentsOf: range, at: rng.below(bytes.count + 1))
        case 5 where bytes.count >= 4:  // overwrite a u32 with an interesting length
            let index = rng.below(bytes.count - 3)
            let remaining = UInt32(bytes.count - index - 4)
            let length: UInt32 = rng.pick([
                0, 1, 2, 7, 8, 9, 16, 64, 255, 256, 65_535, 65_536, 0x0100_0000,
                0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFE, 0xFFFF_FFFF,
                remaining, remaining &+ 1, remaining &- 1,
            ])
            for offset in 0..<4 { bytes[index + offset] = UInt8(truncatingIfNeeded: length >> (24 - 8 * UInt32(offset))) }
        case 6:  // splice another seed in
            let other = rng.pick(seeds)
            let cut = rng.below(bytes.count + 1)
            let from = rng.below(other.count + 1)
            bytes = Array(bytes[..<cut]) + Array(other[from...])
        case 7 where !bytes.isEmpty:  // a random byte
            bytes[rng.below(bytes.count)] = UInt8(truncatingIfNeeded: rng.next())
        default:  // truncate
            if !bytes.isEmpty { bytes.removeLast(1 + rng.below(min(bytes.count, 8))) }
        }
    }
    // Mostly keep the header's body length honest, so the body parser sees the damage.
    if bytes.count >= Packet.headerSize, rng.chance(70) {
        let bodyLength = UInt32(bytes.count - Packet.headerSize)
        for offset in 0..<4 { bytes[4 + offset] = UInt8(truncatingIfNeeded: bodyLength >> (24 - 8 * UInt32(offset))) }
    }
    return bytes
}

@Suite("Wire fuzzing")
struct WireFuzzTests {
    @Test func seedsAreValid() {
        var stats = FuzzStats()
        for packet in seedPackets {
            let bytes = Array(packet.encoded().readableBytesView)
            let problems = check(bytes, stats: &stats)
            #expect(problems.isEmpty, "\(problems)")
            let decoded = try? Packet(decoding: ByteBuffer(bytes: bytes))
            #expect(decoded == packet)
        }
    }

    @Test func seededRandomMutations() {
        let seeds = seedPackets.map { Array($0.encoded().readableBytesView) }
            + [Array((seedPackets[1].encoded().readableBytesView)) + Array(seedPackets[2].encoded().readableBytesView)]
        var rng = SplitMix64(seed: 0x4D79_494D_5769_7265)  // "MyIMWire"
        var stats = FuzzStats()
        var failures: [String] = []
        let clock = ContinuousClock()
        let start = clock.now
        // Half the inputs mutate a seed, half mutate an earlier mutant (which compounds damage).
        var pool = seeds
        for _ in 0..<20_000 {
            let base = rng.chance(50) ? rng.pick(seeds) : rng.pick(pool)
            let input = mutate(base, seeds: seeds, rng: &rng)
            let problems = check(input, stats: &stats)
            if !problems.isEmpty, failures.count < 10 { failures.append("input \(hexString(input)): \(problems)") }
            if pool.count < 512 { pool.append(input) } else { pool[rng.below(pool.count)] = input }
        }
        let elapsed = clock.now - start
        print("WireFuzzTests.seededRandomMutations: \(stats) in \(elapsed)")
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
        #expect(stats.inputs == 20_000)
        // The mutator must reach past the header: valid packets and most distinct error codes.
        #expect(stats.decoded > 500)
        #expect(stats.codes.count >= 12, "only codes \(stats.codes.keys.sorted()) were produced")
    }

    @Test func corpusReplay() throws {
        let folder = try #require(Bundle.module.url(forResource: "Fuzz", withExtension: nil)).resolvingSymlinksInPath()
        let files = try FileManager.default.contentsOfDirectory(at: folder, includingPropertiesForKeys: nil)
            .filter { !$0.lastPathComponent.hasPrefix(".") }
            .sorted { $0.lastPathComponent < $1.lastPathComponent }
        var stats = FuzzStats()
        for file in files {
            let bytes = try [UInt8](Data(contentsOf: file))
            let problems = check(bytes, stats: &stats)
            #expect(problems.isEmpty, "\(file.lastPathComponent): \(problems)")
        }
        print("WireFuzzTests.corpusReplay: \(files.count) files; \(stats)")
        #expect(files.count > 0, "the Fuzz resource folder holds no corpus")
    }
}

private extension WireValue {
    var isDict: Bool { if case .dict = self { true } else { false } }
}
