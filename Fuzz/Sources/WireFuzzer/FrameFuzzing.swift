// Layer 1 (MyIMSecureChannel's FrameSealer / FrameOpener) for the fuzzer. See ../../README.md.
//
// The input is used twice: as ciphertext, fed straight to a FrameOpener (which must reject
// it cleanly), and as plaintext, a stream of packets that must survive sealing and opening,
// whole and one byte at a time. A violation calls fatalError, which libFuzzer reports as a crash.

import Crypto
import MyIMSecureChannel
import MyIMWire
import NIOCore

/// One direction's keys, fixed so that an input means the same thing in every run: the
/// AES-256 key is bytes 0...31, the salt `a0 a1 a2 a3`.
let fuzzKeys = TrafficKeys(key: SymmetricKey(data: (0..<32).map { UInt8($0) }), salt: [0xA0, 0xA1, 0xA2, 0xA3])

/// Every layer-1 check, under each of `allLimits`.
func fuzzFrames(_ input: ByteBuffer) {
    for limits in allLimits {
        openStream(input, limits: limits)
        sealAndOpen(input, limits: limits)
    }
}

/// The raw input as a stream of frames: opened until it needs more bytes or fails. Nil
/// must consume nothing, a packet exactly its frame, and an error must carry a 1xx wire
/// code or a 2xx secure-channel code.
func openStream(_ input: ByteBuffer, limits: WireLimits) {
    var opener = FrameOpener(keys: fuzzKeys, limits: limits)
    var stream = input
    while true {
        let before = stream.readerIndex
        do throws(SecureChannelError) {
            guard let packet = try opener.open(from: &stream) else {
                if stream.readerIndex != before { fatalError("an incomplete FrameOpener.open consumed bytes") }
                return
            }
            let announced = Int(input.getInteger(at: before, as: UInt32.self)!)
            if stream.readerIndex - before != FrameProtection.overhead + announced {
                fatalError("opening a \(announced)-byte frame consumed \(stream.readerIndex - before) bytes")
            }
            if packet.encoded().readableBytes > announced {
                fatalError("a \(announced)-byte frame yielded a larger packet")
            }
        } catch {
            checkChannelCode(error)
            return
        }
    }
}

/// The input as plaintext: every packet `Packet.read` yields (until it needs more bytes or
/// fails) is sealed, and the frames must open, whole and drip-fed, to exactly those packets.
func sealAndOpen(_ input: ByteBuffer, limits: WireLimits) {
    var packets: [Packet] = []
    var stream = input
    while let (packet, _) = try? Packet.read(from: &stream, maxSize: limits.maxFrameSize, limits: limits) {
        packets.append(packet)
    }
    guard !packets.isEmpty else { return }

    var sealer = FrameSealer(keys: fuzzKeys, limits: limits)
    var frames = ByteBuffer()
    for packet in packets {
        let before = frames.writerIndex
        do throws(SecureChannelError) {
            try sealer.seal(packet, into: &frames)
        } catch {
            fatalError("a packet Packet.read accepted cannot be sealed: \(error)")
        }
        let frameSize = frames.writerIndex - before
        let padded = frameSize - FrameProtection.overhead
        if !FrameProtection.isPaddedLength(padded) || padded > limits.maxFrameSize {
            fatalError("a \(packet.encoded().readableBytes)-byte packet was sealed into a \(frameSize)-byte frame")
        }
    }

    // All frames at once.
    var opener = FrameOpener(keys: fuzzKeys, limits: limits)
    var whole = frames
    let opened = openAll(&whole, with: &opener, what: "whole")
    if whole.readableBytes != 0 { fatalError("\(whole.readableBytes) sealed bytes were left unopened") }
    if opened != packets { fatalError("open(seal(packets)) != packets for \(hex(input))") }
    if opener.counter != sealer.counter { fatalError("the opener counted \(opener.counter) frames, the sealer \(sealer.counter)") }

    // One byte at a time, as a slow peer would deliver them.
    var dripOpener = FrameOpener(keys: fuzzKeys, limits: limits)
    var pending = ByteBuffer()
    var dripped: [Packet] = []
    for byte in frames.readableBytesView {
        pending.writeInteger(byte)
        dripped += openAll(&pending, with: &dripOpener, what: "drip-fed")
    }
    if pending.readableBytes != 0 { fatalError("\(pending.readableBytes) drip-fed bytes were left unopened") }
    if dripped != packets { fatalError("drip-fed frames open differently for \(hex(input))") }
}

/// Opens frames until the opener needs more bytes; any error is a failure here.
func openAll(_ buffer: inout ByteBuffer, with opener: inout FrameOpener, what: String) -> [Packet] {
    var packets: [Packet] = []
    while true {
        let before = buffer.readerIndex
        do throws(SecureChannelError) {
            guard let packet = try opener.open(from: &buffer) else {
                if buffer.readerIndex != before { fatalError("an incomplete FrameOpener.open consumed \(what) bytes") }
                return packets
            }
            packets.append(packet)
        } catch {
            fatalError("a \(what) frame the sealer made fails to open: \(error)")
        }
    }
}

func checkChannelCode(_ error: SecureChannelError) {
    let code = error.code.rawValue
    guard (100...114).contains(code) || (200...299).contains(code) else {
        fatalError("FrameOpener threw a code that is neither wire nor secure channel: \(error)")
    }
}

/// Seeds for the opener: the seed packets sealed as frames (counter 0), and two in a row.
func frameSeeds(_ packets: [Packet]) -> [[UInt8]] {
    func sealed(_ packets: [Packet]) -> [UInt8] {
        var sealer = FrameSealer(keys: fuzzKeys)
        var frames = ByteBuffer()
        for packet in packets {
            do throws(SecureChannelError) { try sealer.seal(packet, into: &frames) } catch { fatalError("seed: \(error)") }
        }
        return Array(frames.readableBytesView)
    }
    return packets.map { sealed([$0]) } + [sealed([packets[1], packets[2]])]
}
