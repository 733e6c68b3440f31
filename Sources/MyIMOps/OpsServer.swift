import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// What a role says about itself at `/health`.
public struct HealthReport: Sendable {
    /// `login-center`, `center` or `endpoint`.
    public var role: String
    public var node: String
    public var version: String
    public var started: ContinuousClock.Instant
    /// Role-specific figures (sessions held, queued messages, …).
    public var figures: [String: Int]
    /// False when the role cannot do its work (e.g. an endpoint without its center): `/health`
    /// then answers 503.
    public var ready: Bool

    public init(role: String, node: String, version: String, started: ContinuousClock.Instant, figures: [String: Int] = [:], ready: Bool = true) {
        self.role = role
        self.node = node
        self.version = version
        self.started = started
        self.figures = figures
        self.ready = ready
    }

    /// The JSON body of `/health`, keys sorted.
    public var json: [UInt8] {
        var object: [String: Any] = [
            "status": ready ? "ok" : "degraded", "role": role, "node": node, "version": version,
            "uptime_seconds": Int(started.duration(to: .now).components.seconds),
        ]
        for (key, value) in figures { object[key] = value }
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return Array(data) + [0x0A]
    }
}

/// A small HTTP/1.1 server on NIO for the two operational routes of a role: `GET /metrics`
/// (Prometheus text) and `GET /health` (JSON; 200 when ready, 503 when not). Anything else is
/// 404, any other method 405. One request per connection is enough for scrapers and probes,
/// but keep-alive is honoured.
public enum OpsServer {
    /// Binds `host:port` (port 0 picks one) and returns the listener to ``serve(_:health:logger:)``.
    public static func bind(host: String, port: Int) async throws
        -> NIOAsyncChannel<NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, Never>
    {
        try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    return try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(
                        wrappingChannelSynchronously: channel)
                }
            }
    }

    /// Serves until the listener closes or the task is cancelled; also keeps the event-loop
    /// lag gauge up to date.
    public static func serve(
        _ listener: NIOAsyncChannel<NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, Never>,
        health: @escaping @Sendable () async -> HealthReport, logger: Logger
    ) async throws {
        _ = OpsMetrics.registry
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { await OpsMetrics.watchEventLoops() }
            try await listener.executeThenClose { inbound in
                for try await connection in inbound {
                    group.addTask { await handle(connection, health: health, logger: logger) }
                }
            }
            group.cancelAll()
        }
    }

    private static func handle(
        _ connection: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>,
        health: @Sendable () async -> HealthReport, logger: Logger
    ) async {
        do {
            try await connection.executeThenClose { inbound, outbound in
                var head: HTTPRequestHead?
                for try await part in inbound {
                    switch part {
                    case .head(let request):
                        head = request
                    case .body:
                        break  // No route takes a body.
                    case .end:
                        guard let request = head else { continue }
                        head = nil
                        let (status, type, body) = await respond(to: request, health: health)
                        var headers = HTTPHeaders()
                        headers.add(name: "Content-Type", value: type)
                        headers.add(name: "Content-Length", value: "\(body.count)")
                        if !request.isKeepAlive { headers.add(name: "Connection", value: "close") }
                        try await outbound.write(.head(HTTPResponseHead(version: request.version, status: status, headers: headers)))
                        try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: body))))
                        try await outbound.write(.end(nil))
                        if !request.isKeepAlive { return }
                    }
                }
            }
        } catch {
            logger.debug("metrics connection ended", metadata: ["error": "\(error)"])
        }
    }

    private static func respond(to request: HTTPRequestHead, health: @Sendable () async -> HealthReport) async
        -> (HTTPResponseStatus, String, [UInt8])
    {
        let path = request.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? request.uri
        guard path == "/metrics" || path == "/health" else {
            return (.notFound, "text/plain; charset=utf-8", Array("not found: the routes are /metrics and /health\n".utf8))
        }
        guard request.method == .GET || request.method == .HEAD else {
            return (.methodNotAllowed, "text/plain; charset=utf-8", Array("only GET\n".utf8))
        }
        if path == "/metrics" {
            return (.ok, "text/plain; version=0.0.4; charset=utf-8", OpsMetrics.exposition())
        }
        let report = await health()
        return (report.ready ? .ok : .serviceUnavailable, "application/json", report.json)
    }
}
