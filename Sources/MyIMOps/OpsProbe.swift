import NIOCore
import NIOHTTP1
import NIOPosix
#if canImport(Glibc)
import Glibc
#endif

/// A one-request HTTP/1.1 client for `myim health` and `myim status`: enough to read a
/// role's `/health`, with a deadline, without a general HTTP client (and its libraries) in
/// the image.
public enum OpsProbe {
    public struct Response: Sendable {
        public var status: Int
        public var body: [UInt8]
    }

    /// Why a connection failed, for a person: "connection refused", "timed out", …
    public static func describe(_ error: any Error) -> String {
        var error = error
        if let failure = error as? NIOConnectionError, let first = failure.connectionErrors.first { error = first.error }
        if let io = error as? IOError { return String(cString: strerror(io.errnoCode)).lowercased() }
        if case ChannelError.connectTimeout = error { return "timed out" }
        return "\(error)"
    }

    /// `GET path` on `host:port`; throws when no answer comes within `timeout`.
    public static func get(host: String, port: Int, path: String, timeout: Duration = .seconds(3)) async throws -> Response {
        let nanos = Int64(timeout.components.seconds) * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.nanoseconds(nanos))
            .connect(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(wrappingChannelSynchronously: channel)
                }
            }
        let timer = channel.channel.eventLoop.scheduleTask(in: .nanoseconds(nanos)) { channel.channel.close(promise: nil) }
        defer { timer.cancel() }
        return try await channel.executeThenClose { inbound, outbound in
            var headers = HTTPHeaders()
            headers.add(name: "Host", value: "\(host):\(port)")
            headers.add(name: "Connection", value: "close")
            try await outbound.write(.head(HTTPRequestHead(version: .http1_1, method: .GET, uri: path, headers: headers)))
            try await outbound.write(.end(nil))
            var status = 0
            var body: [UInt8] = []
            for try await part in inbound {
                switch part {
                case .head(let head): status = Int(head.status.code)
                case .body(var buffer):
                    guard body.count + buffer.readableBytes <= 1 << 20 else { throw OpsProbeError("the answer is larger than 1 MiB") }
                    body += buffer.readBytes(length: buffer.readableBytes) ?? []
                case .end: return Response(status: status, body: body)
                }
            }
            throw OpsProbeError("the connection closed before the answer was complete")
        }
    }

    /// Whether `host:port` accepts a TCP connection within `timeout`.
    public static func accepts(host: String, port: Int, timeout: Duration = .seconds(3)) async -> Bool {
        let nanos = Int64(timeout.components.seconds) * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000
        guard let channel = try? await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.nanoseconds(nanos)).connect(host: host, port: port).get()
        else { return false }
        try? await channel.close()
        return true
    }
}

public struct OpsProbeError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
