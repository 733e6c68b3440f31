import ArgumentParser
import MyIMCenter
import MyIMPresence
import MyIMRedis
import MyIMTopology

/// `myim center`: one domain's sessions, routing, friendships and offline messages.
struct CenterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "center",
        abstract: "Run the center NODE of the topology file (one per domain)."
    )

    @Option(help: "The cluster's topology file.")
    var topology: String = "topology.yaml"

    @Option(help: "The center's node name in the topology.")
    var node: String

    @Option(help: "trace, debug, info, notice, warning, error or critical (default: the topology's logLevel).")
    var logLevel: String?

    func run() async throws {
        let topology = try Topology.load(path: topology)
        let logger = try makeLogger(label: "myim.center", node: node, level: logLevel ?? topology.logLevel)
        guard let domain = topology.domains.first(where: { $0.center.name == node }) else {
            throw ValidationError("no center is named '\(node)' in \(topology.file)")
        }
        let redis = try await connectRedis(RedisURL(topology.redis), logger: logger)
        let presence = RedisPresenceStore(connection: redis, domain: domain.name)
        let keys = ClusterKeys(topology: topology)
        let directory = DirectoryLink(settings: try DirectoryLink.Settings(topology: topology, node: node, keys: keys), logger: logger)
        let configuration = try CenterConfiguration(topology: topology, node: node, keys: keys, presence: presence, directory: directory)
        let center = try Center(configuration: configuration, logger: logger)
        let listener = try await center.bind()
        logger.notice("center listening", metadata: [
            "address": "\(listener.channel.localAddress.display)", "domain": "\(domain.name)",
            "links": "\(topology.links.rawValue)", "database": "\(configuration.databasePath)",
        ])
        try await runRole(
            metrics: domain.center.metrics, role: "center", node: node, logger: logger,
            health: { (await center.figures(), await !center.draining) },
            serve: { try await center.serve(listener) },
            drain: { await center.drain() })
    }
}
