import MyIMWire
import NIOCore
import NIOPosix
import NIOSSL
import X509
#if canImport(Glibc)
import Glibc
#endif

/// Opens and accepts links: TLS (or not), then packets both ways as an async channel.
public enum LinkChannel {
    /// Listens for links on `host:port` (port 0 picks a free one). `prepare` runs on each
    /// accepted channel as ``connect(host:port:serverName:protection:limits:timeout:group:leftEncoded:prepare:)``'s does.
    public static func bind(
        host: String, port: Int, protection: LinkProtection, limits: WireLimits = .default,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        leftEncoded: Set<UInt32> = [], prepare: @escaping @Sendable (any Channel) throws -> Void = { _ in }
    ) async throws -> NIOAsyncChannel<NIOAsyncChannel<Packet, Packet>, Never> {
        try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .bind(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    if case .tls(let context) = protection {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context))
                    }
                    return try configure(channel, limits: limits, leftEncoded: leftEncoded, prepare: prepare)
                }
            }
    }

    /// Connects a link to `host:port`; `serverName` is the peer's node name, which its
    /// certificate must carry. `prepare` runs on the new channel's event loop before the async
    /// channel wraps it: handlers it adds last see decoded packets before the async channel does.
    /// Packets of the types in `leftEncoded` arrive with their body unparsed (``PacketFrameDecoder``).
    public static func connect(
        host: String, port: Int, serverName: String, protection: LinkProtection, limits: WireLimits = .default,
        timeout: TimeAmount = .seconds(5), group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        leftEncoded: Set<UInt32> = [], prepare: @escaping @Sendable (any Channel) throws -> Void = { _ in }
    ) async throws -> NIOAsyncChannel<Packet, Packet> {
        try await ClientBootstrap(group: group)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(timeout)
            .connect(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    if case .tls(let context) = protection {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: serverName))
                    }
                    return try configure(channel, limits: limits, leftEncoded: leftEncoded, prepare: prepare)
                }
            }
    }

    /// Why a link could not be made or was lost, for a person: "connection refused
    /// (127.0.0.1:7100)" rather than NIO's error description.
    public static func describe(_ error: any Error) -> String {
        if let failure = error as? NIOConnectionError, let first = failure.connectionErrors.first {
            let reason = (first.error as? IOError).map { String(cString: strerror($0.errnoCode)).lowercased() } ?? "\(first.error)"
            return "\(reason) (\(failure.host):\(failure.port))"
        }
        if let io = error as? IOError { return String(cString: strerror(io.errnoCode)).lowercased() }
        if case ChannelError.connectTimeout = error { return "timed out" }
        return "\(error)"
    }

    /// The accepting side's first step on a link: reads `LinkHello`, checks it with `admit`
    /// (nil to accept, else why not) and that a TLS peer's certificate names the node it
    /// claims. On any refusal the peer is told (`LinkRefused`) and nil is returned; the caller
    /// then closes the link. Nil too when the link closes before saying anything.
    public static func acceptHello(
        _ packets: inout NIOAsyncChannelInboundStream<Packet>.AsyncIterator, outbound: NIOAsyncChannelOutboundWriter<Packet>,
        channel: any Channel, admit: (LinkHello) -> String?
    ) async throws -> LinkHello? {
        guard let first = try await packets.next() else { return nil }
        let hello: LinkHello
        do throws(WireError) { hello = try LinkHello(packet: first) } catch {
            try await outbound.write(LinkRefused(code: error.code, message: "the first link message must be 2001: \(error.message)").packet)
            return nil
        }
        if let refusal = admit(hello) {
            try await outbound.write(LinkRefused(code: .notSupportedHere, message: refusal).packet)
            return nil
        }
        if let mismatch = await peerMismatch(channel, claimedNode: hello.node) {
            try await outbound.write(LinkRefused(code: .notSupportedHere, message: mismatch).packet)
            return nil
        }
        return hello
    }

    /// Checks that the peer of a TLS link is the node it says it is: its certificate (already
    /// verified against the cluster CA) must name `node`. A plain link has no certificate and
    /// passes. Returns why not, for a `LinkRefused`.
    public static func peerMismatch(_ channel: any Channel, claimedNode node: String) async -> String? {
        let certificate: NIOSSLCertificate?
        do {
            certificate = try await channel.nioSSL_peerCertificate().get()
        } catch {
            return nil  // No TLS handler: a plain link.
        }
        guard let certificate else { return "the link's TLS peer presented no certificate" }
        let names: [String]
        do {
            let parsed = try Certificate(derEncoded: try certificate.toDERBytes())
            let alternatives = try parsed.extensions.subjectAlternativeNames.map(Array.init) ?? []
            names = alternatives.compactMap { name -> String? in
                if case .dnsName(let dns) = name { dns.lowercased() } else { nil }
            }
        } catch {
            return "the link's certificate cannot be read: \(error)"
        }
        guard names.contains(node.lowercased()) else {
            return "the link's certificate is for \(names.joined(separator: ", ")), not for \(node)"
        }
        return nil
    }

    private static func configure(
        _ channel: any Channel, limits: WireLimits, leftEncoded: Set<UInt32> = [], prepare: (any Channel) throws -> Void = { _ in }
    ) throws -> NIOAsyncChannel<Packet, Packet> {
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(PacketFrameDecoder(limits: limits, leftEncoded: leftEncoded)))
        try channel.pipeline.syncOperations.addHandler(PacketBatchEncoder())
        try prepare(channel)
        return try NIOAsyncChannel<Packet, Packet>(wrappingChannelSynchronously: channel)
    }
}
