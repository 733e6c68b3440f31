import Logging
import MyIMOps
import MyIMTopology
import ServiceLifecycle

/// Runs a server role until SIGTERM or SIGINT, then shuts it down gracefully.
///
/// The role is a swift-service-lifecycle service: on the signal its `drain` runs (refuse new
/// work, finish what is under way, bounded by the role's own timeout), then `serve` is
/// cancelled and the process exits. A second signal, or `drain` overrunning
/// `gracePeriod`, cancels at once. When the topology gives the node a metrics address,
/// `/metrics` and `/health` are served there until the role has stopped.
func runRole(
    metrics: HostPort?, role: String, node: String, logger: Logger, gracePeriod: Duration = .seconds(20),
    health: @escaping @Sendable () async -> (figures: [String: Int], ready: Bool),
    serve: @escaping @Sendable () async throws -> Void,
    drain: @escaping @Sendable () async -> Void
) async throws {
    var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
    if let metrics {
        _ = OpsMetrics.registry  // Installed before the role records anything.
        let listener = try await OpsServer.bind(host: metrics.host, port: metrics.port)
        logger.notice("metrics and health listening", metadata: ["address": "\(listener.channel.localAddress.display)"])
        let started = ContinuousClock.now
        let ops = ClosureService {
            do {
                try await cancelWhenGracefulShutdown {
                    try await OpsServer.serve(listener, health: {
                        let (figures, ready) = await health()
                        return HealthReport(role: role, node: node, version: MyIMVersion.string, started: started, figures: figures, ready: ready)
                    }, logger: logger)
                }
            } catch {
                // Cancelled by the shutdown, as intended: not a failure of the process.
                guard error is CancellationError || Task.isCancelled else { throw error }
            }
        }
        // First in the list, so that it is shut down last: health answers while the role drains.
        services.append(.init(service: ops))
    }
    services.append(.init(
        service: RoleService(serve: serve, drain: drain, logger: logger),
        successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup))
    var configuration = ServiceGroupConfiguration(
        services: services, gracefulShutdownSignals: [.sigterm, .sigint], cancellationSignals: [], logger: logger)
    configuration.maximumGracefulShutdownDuration = gracePeriod
    try await ServiceGroup(configuration: configuration).run()
}

/// A role as a service: `serve` until graceful shutdown, then `drain`, then cancel `serve`.
private struct RoleService: Service {
    let serve: @Sendable () async throws -> Void
    let drain: @Sendable () async -> Void
    let logger: Logger

    func run() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await serve() }
            group.addTask {
                try await gracefulShutdown()
                logger.notice("shutdown signal: draining")
                await drain()
            }
            // Either the role stopped by itself (its error ends the process), or it drained.
            defer { group.cancelAll() }
            try await group.next()
        }
        logger.notice("stopped")
    }
}
