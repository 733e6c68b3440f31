import ArgumentParser
import Logging
import MyIMEndpoint
import MyIMPresence
import MyIMRedis
import MyIMTopology

/// `myim endpoint`: holds client connections for one domain and relays them to its center.
struct EndpointCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "endpoint",
        abstract: "Run one endpoint of the topology file: client connections, token auth, the link to the center."
    )

    @Option(help: "The cluster's topology file.")
    var topology: String = "topology.yaml"

    @Option(help: "The endpoint's node name in the topology.")
    var node: String

    @Option(help: "trace, debug, info, notice, warning, error or critical (default: the topology's log_level).")
    var logLevel: String?

    @OptionGroup var sourceLimit: SourceLimitOption

    func run() async throws {
        let topology = try Topology.load(path: topology)
        let logger = try makeLogger(label: "myim.endpoint", node: node, level: logLevel ?? topology.logLevel)
        guard let domain = topology.domains.first(where: { $0.endpoints.contains { $0.name == node } }) else {
            let known = topology.domains.flatMap { $0.endpoints.map(\.name) }
            throw ValidationError("no endpoint is named '\(node)' in \(topology.file); the endpoints are \(known.joined(separator: ", "))")
        }
        // Presence lives in the topology's Redis: the center reads what the heartbeats refresh.
        let url = try RedisURL(topology.redis)
        let redis = try await connectRedis(url, logger: logger)
        let presence = RedisPresenceStore(connection: redis, domain: domain.name)
        var configuration = try EndpointConfiguration(topology: topology, node: node, keys: ClusterKeys(topology: topology), presence: presence)
        sourceLimit.apply(to: &configuration)
        let endpoint = await Endpoint(configuration: configuration, logger: logger)
        let listener = try await endpoint.bind()
        logger.notice("endpoint listening", metadata: [
            "address": "\(listener.channel.localAddress.display)",
            "domain": "\(configuration.domain)",
            "fingerprint": "\(configuration.identity.publicKey.fingerprint)",
            "center": "\(configuration.centerName) at \(configuration.centerHost):\(configuration.centerPort)",
            "redis": "\(url)",
        ])
        let metrics = domain.endpoints.first { $0.name == node }?.metrics
        try await runRole(
            metrics: metrics, role: "endpoint", node: node, logger: logger,
            health: {
                let linked = await endpoint.isLinkUp
                return (["sessions": await endpoint.sessionCount, "center_linked": linked ? 1 : 0], linked)
            },
            serve: { try await endpoint.serve(listener) },
            drain: { await endpoint.drain() })
        try? await redis.close()
    }
}

/// `--max-connections-per-source`, for every command that runs an endpoint.
struct SourceLimitOption: ParsableArguments {
    @Option(help: "Client connections one source address may hold at once at the endpoint (default 64). Raise it for many clients behind one NAT, or for load tests from one host.")
    var maxConnectionsPerSource: Int?

    func validate() throws {
        if let maxConnectionsPerSource, !(1...1_000_000).contains(maxConnectionsPerSource) {
            throw ValidationError("--max-connections-per-source must be 1...1000000")
        }
    }

    func apply(to configuration: inout EndpointConfiguration) {
        if let maxConnectionsPerSource { configuration.maxConnectionsPerSource = maxConnectionsPerSource }
    }
}
