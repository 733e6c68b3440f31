import ArgumentParser
import MyIMCenter
import MyIMEndpoint
import MyIMLoginCenter
import MyIMPresence
import MyIMTopology

/// `myim serve --all-in-one`: seed 004's small site, where the center is also the endpoint.
///
/// The login center, the first domain's center and its first endpoint run in this one
/// process, with presence in memory (no Redis) and the link between center and endpoint on
/// a loopback port chosen at start, plain TCP since it never leaves the process's host. The
/// center asks the login center's directory in-process rather than over a link.
/// Clients see the same login center and endpoint addresses as in the split topology.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run a small site in one process: login center, center and one endpoint, presence in memory."
    )

    @Flag(help: "Run every role of the first domain in this process (the only mode so far).")
    var allInOne = false

    @Option(help: "The cluster's topology file.")
    var topology: String = "topology.yaml"

    @Option(help: "trace, debug, info, notice, warning, error or critical (default: the topology's logLevel).")
    var logLevel: String?

    @OptionGroup var sourceLimit: SourceLimitOption

    func run() async throws {
        guard allInOne else { throw ValidationError("only --all-in-one is supported; for separate processes use `myim cluster up`") }
        var topology = try Topology.load(path: topology)
        let level = logLevel ?? topology.logLevel
        let keys = ClusterKeys(topology: topology)
        guard var domain = topology.domains.first, let endpointNode = domain.endpoints.first else {
            throw ValidationError("the topology has no domain with an endpoint")
        }
        // The center listens on a loopback port of its own; only this process connects to it.
        domain.center.listen = HostPort(host: "127.0.0.1", port: 0)
        topology.domains = [domain]

        var loginConfiguration = try LoginCenterConfiguration(topology: topology, keys: keys)
        loginConfiguration.directory = nil  // The center asks in-process.
        loginConfiguration.servers = [domain.name: loginConfiguration.servers[domain.name, default: []].filter { $0.name == endpointNode.name }]
        let loginLogger = try makeLogger(label: "myim.login-center", node: topology.loginCenter.name, level: level)
        let loginCenter = await LoginCenter(
            configuration: loginConfiguration, store: try SQLiteAccountStore(path: loginConfiguration.databasePath), logger: loginLogger)
        let loginListener = try await loginCenter.bind()

        let presence = InMemoryPresenceStore(domain: domain.name)
        var centerConfiguration = try CenterConfiguration(
            topology: topology, node: domain.center.name, keys: keys, presence: presence, directory: loginCenter.localDirectory(domain: domain.name))
        centerConfiguration.protection = .plain
        let center = try Center(configuration: centerConfiguration, logger: try makeLogger(label: "myim.center", node: domain.center.name, level: level))
        let centerListener = try await center.bind()
        guard let centerPort = centerListener.channel.localAddress?.port else { throw ValidationError("the center has no port") }

        var endpointConfiguration = try EndpointConfiguration(topology: topology, node: endpointNode.name, keys: keys, presence: presence)
        endpointConfiguration.centerHost = "127.0.0.1"
        endpointConfiguration.centerPort = centerPort
        endpointConfiguration.linkProtection = .plain
        sourceLimit.apply(to: &endpointConfiguration)
        let endpoint = await Endpoint(
            configuration: endpointConfiguration, logger: try makeLogger(label: "myim.endpoint", node: endpointNode.name, level: level))
        let endpointListener = try await endpoint.bind()

        loginLogger.notice("all-in-one site ready", metadata: [
            "domain": "\(domain.name)", "login_center": "\(loginListener.channel.localAddress.display)",
            "endpoint": "\(endpointListener.channel.localAddress.display)",
        ])
        try await runRole(
            metrics: endpointNode.metrics, role: "all-in-one", node: endpointNode.name, logger: loginLogger,
            health: {
                let linked = await endpoint.isLinkUp
                var figures = await center.figures()
                figures["center_linked"] = linked ? 1 : 0
                return (figures, linked)
            },
            serve: {
                try await withThrowingDiscardingTaskGroup { group in
                    group.addTask { try await center.serve(centerListener) }
                    group.addTask { try await endpoint.serve(endpointListener) }
                    group.addTask { try await loginCenter.serve(loginListener) }
                }
            },
            drain: {
                // Clients first (they may still be acknowledging), then the center's writes, then logins.
                await endpoint.drain()
                await center.drain()
                await loginCenter.drain()
            })
        try? await loginCenter.shutdown()
    }
}
